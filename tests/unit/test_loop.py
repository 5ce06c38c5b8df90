"""The loop's behaviour on the in-memory fakes: real Reconciler, FullResync and Controller.

What only real Docker and Postgres can show stays in tests/integration; here are the loop's
decisions end to end, each in milliseconds: convergence, a crash resumed at every phase
boundary, a deposed leader, transient and permanent failures, stuck phases across a leader
change, the health deadline, and a crash-looping replica.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest

from controller.loop import faults
from controller.loop.resync import Release
from controller.loop.status import held_progress
from controller.model.errors import DockerServerError
from controller.model.names import LABEL_PROOF
from controller.model.outcome import Result
from controller.model.phases import Phase
from controller.model.replicas import RunState
from tests.fakes import Behaviour, Cluster, SimulatedCrash, crash_at

HEALTHCHECK = {"test": ["CMD-SHELL", "true"], "interval_s": 1.0}


@pytest.fixture(autouse=True)
def _disarm() -> Iterator[None]:
    yield
    faults.arm(None)


def assert_converged(cluster: Cluster, name: str, replicas: int) -> None:
    status = cluster.store.status(name)
    assert status.phase == Phase.ACTIVE, status.message
    assert status.ready_replicas == replicas
    assert status.observed_generation == cluster.store.generations[name]
    containers = cluster.runtime.of(name)
    slots = sorted(int(c.request.labels["io.berth.replica"]) for c in containers)
    assert slots == list(range(replicas)), "exactly one container per slot, no duplicate"
    assert all(c.state == "running" for c in containers)


def test_new_deployment_walks_the_phases_to_active() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1", replicas=2)
    cluster.drive("web")
    assert_converged(cluster, "web", 2)
    assert cluster.store.phase_events("web") == [
        Phase.QUEUED,
        Phase.PULLING_IMAGE,
        Phase.CREATING,
        Phase.STARTING,
        Phase.ACTIVE,
    ]
    assert cluster.last_outcome("web").result == Result.DONE
    assert cluster.last_outcome("web").requeue_after is None


def test_a_converged_deployment_costs_no_write() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1")
    cluster.drive("web")
    writes = cluster.store.status_writes
    cluster.drive("web")
    cluster.drive()  # a full resync finds nothing to do
    assert cluster.store.status_writes == writes
    assert cluster.runtime.calls.count("create") == 1


def test_a_pass_waiting_for_health_writes_only_what_changed() -> None:
    """Entering `health_check` is one write (the phase with its progress); every later look
    that finds the replica still starting writes nothing."""
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1", healthcheck=HEALTHCHECK)
    cluster.runtime.behaviours["web"] = Behaviour(healthy_after_s=None)
    before = cluster.store.status_writes
    cluster.drive("web", until_s=0)
    assert cluster.store.status("web").phase == Phase.HEALTH_CHECK
    # `creating` and `starting` ride with their calls' intents, `health_check` with its
    # progress: one write each
    assert cluster.store.status_writes == before + 3
    writes, passes = cluster.store.status_writes, len(cluster.outcomes)
    cluster.drive("web", until_s=30)
    assert len(cluster.outcomes) - passes >= 10, "looked again at every poll interval"
    assert cluster.store.status_writes == writes


CRASH_POINTS = [
    "before:queued",
    "before:pulling_image",
    "after:image",
    "before:creating",
    "after:create",
    "after:create#2",
    "before:starting",
    "after:start",
    "after:start#2",
    "before:health_check",
    "before:active",
]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_at_every_phase_boundary_is_resumed_by_the_next_leader(point: str) -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1", replicas=2, healthcheck=HEALTHCHECK)
    cluster.runtime.behaviours["web"] = Behaviour(healthy_after_s=2.0)
    crash_at(point)
    with pytest.raises(SimulatedCrash):
        cluster.drive("web")
    successor = cluster.successor()
    successor.drive()  # the new leader's first full resync finds the half-done work
    assert_converged(successor, "web", 2)
    assert successor.runtime.calls.count("create") == 2, "no container created twice"


def test_a_deposed_leader_neither_writes_nor_mutates() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1", replicas=3)
    cluster.store.term += 1  # another replica claimed a newer term
    cluster.drive("web")
    assert cluster.last_outcome("web").result == Result.DEPOSED
    assert cluster.last_outcome("web").requeue_after is None
    assert cluster.store.statuses == {}
    assert cluster.runtime.containers == {}
    assert cluster.store.intents == []


def test_a_leader_deposed_mid_pass_stops_before_its_next_mutation() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1", replicas=3)

    def depose() -> None:
        cluster.store.term += 1

    faults.arm("after:create", depose)  # the term moves on right after the first create
    cluster.drive("web")
    assert cluster.last_outcome("web").result == Result.DEPOSED
    assert len(cluster.runtime.containers) == 1
    old_term = cluster.leadership.term
    assert [i.action for i in cluster.store.intents if i.term == old_term] == ["create"]
    assert all(term == old_term for term, _ in cluster.store.events)
    # ...and the new leader finishes the job without a duplicate.
    successor = cluster.successor()
    successor.drive()
    assert_converged(successor, "web", 3)


def test_transient_failures_back_off_exponentially_then_recover() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1")
    cluster.runtime.fail("create", DockerServerError("engine busy"), DockerServerError("busy"))
    cluster.drive("web", until_s=0)
    first = cluster.last_outcome("web")
    assert (first.result, first.phase, first.requeue_after) == (Result.TRANSIENT, Phase.FAILED, 1)
    status = cluster.store.status("web")
    assert (status.failure_kind, status.attempts) == ("transient", 1)
    assert status.next_attempt_at == cluster.clock.wall() + timedelta(seconds=1)
    assert "retrying in 1s" in status.message
    assert cluster.queue.next_due() == cluster.clock.elapsed + 1, "the controller requeued it"

    cluster.drive(until_s=1)
    assert cluster.last_outcome("web").requeue_after == 2, "the second failure waits twice as long"
    assert cluster.store.status("web").attempts == 2

    cluster.drive()
    assert_converged(cluster, "web", 1)
    assert cluster.store.status("web").attempts == 0


def test_a_permanent_failure_waits_for_a_spec_change() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/missing:1")
    cluster.drive("web", until_s=0)
    outcome = cluster.last_outcome("web")
    retry_s = cluster.settings.permanent_retry_s
    assert (outcome.result, outcome.terminal, outcome.requeue_after) == (
        Result.PERMANENT,
        True,
        retry_s,
    )
    status = cluster.store.status("web")
    assert status.failure_kind == "permanent"
    assert "not present locally" in status.message
    image_calls = cluster.runtime.calls.count("image")
    cluster.drive("web", until_s=retry_s - 1)
    cluster.drive(until_s=0)
    assert cluster.runtime.calls.count("image") == image_calls, "not retried unchanged"
    cluster.store.apply("web", image="berth-example/busybox:1")
    cluster.drive("web")
    assert_converged(cluster, "web", 1)


def test_a_permanent_failure_is_retried_slowly_when_what_it_lacked_appears() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/later:1")
    cluster.drive("web", until_s=0)
    assert cluster.store.status("web").failure_kind == "permanent"
    cluster.runtime.images.add("berth-example/later:1")  # loaded by hand
    cluster.drive(until_s=cluster.settings.permanent_retry_s)
    assert_converged(cluster, "web", 1)


def test_stuck_count_survives_leader_changes_and_fails_the_third_time() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1")
    crash_at("before:starting")  # the leader dies in `creating`, and nobody resumes it
    with pytest.raises(SimulatedCrash):
        cluster.drive("web")
    assert cluster.store.status("web").phase == Phase.CREATING
    leader = cluster
    for time in (1, 2, 3):
        leader = leader.successor()  # each failover starts with an empty memory
        leader.clock.advance(leader.settings.stuck_deadline_s + 1)
        assert leader.resync.run() == {"web"}
        assert leader.store.statuses["web"].stuck_resumes == time
    messages = [e.message for _, e in leader.store.events if e.kind == "error"]
    assert "resuming (time 3 of 3)" in messages[-1]
    leader.drive("web", until_s=0)
    outcome = leader.last_outcome("web")
    assert outcome.result == Result.TRANSIENT
    assert "stuck in creating 3 times although resumed" in outcome.message
    assert leader.store.statuses["web"].stuck_resumes == 0, "a settled phase resets the count"


def test_replicas_never_ready_fail_at_the_health_deadline() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1", healthcheck=HEALTHCHECK)
    cluster.runtime.behaviours["web"] = Behaviour(healthy_after_s=None)
    deadline = cluster.settings.health_check_deadline_s
    cluster.drive("web", until_s=deadline - 5)
    assert cluster.store.status("web").phase == Phase.HEALTH_CHECK
    assert cluster.last_outcome("web").requeue_after == cluster.settings.health_poll_interval_s
    cluster.drive(until_s=10)
    failures = [o for _, o in cluster.outcomes if o.result == Result.TRANSIENT]
    assert len(failures) == 1, "failed once, at the deadline"
    assert f"(deadline {deadline:g}s)" in failures[0].message
    assert "probe failed: connection refused" in failures[0].message
    assert failures[0].requeue_after == cluster.settings.retry_base_s
    failed = [e for _, e in cluster.store.events if e.phase_to == Phase.FAILED]
    assert [e.metadata["failed_in"] for e in failed] == ["health_check"]


def test_a_crash_looping_replica_backs_off_with_an_absolute_next_restart() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1")
    cluster.runtime.behaviours["web"] = Behaviour(exit_code=3)
    cluster.drive("web", until_s=0)
    cluster.drive("web", until_s=0)  # the replica exited: restarted at once (restart 1)
    starting = [
        e.message for _, e in cluster.store.events if e.kind == "phase" and e.phase_to == "starting"
    ]
    assert starting[-1] == "restarting exited replica 0, restart 1"
    cluster.drive("web", until_s=0)  # exited again: restart 2 must wait 10 s
    status = cluster.store.status("web")
    assert status.phase == Phase.DEGRADED
    due = cluster.clock.wall() + timedelta(seconds=10)
    assert f"next restart at {due:%H:%M:%S}Z" in status.message
    assert status.phase_metadata["next_restart_at"] == due.isoformat()
    assert "exited with code 3" in status.message
    assert "fatal: no config" in status.message
    assert cluster.last_outcome("web").requeue_after == 10
    assert status.restart_count == 1

    cluster.drive(until_s=10)
    assert cluster.store.status("web").restart_count >= 2
    restarts = cluster.store.status("web").replica_restarts["0"]["restarts"]
    assert restarts >= 2


def test_an_engine_restart_is_no_fault_of_the_deployments() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1", replicas=2)
    cluster.store.apply("api", image="berth-example/busybox:1")
    cluster.drive("web", "api")
    cluster.engine_down()
    cluster.drive("web", "api", until_s=30)  # passes fail while it is down
    assert {name for name, o in cluster.outcomes[-4:] if o.result == Result.TRANSIENT} == {
        "web",
        "api",
    }
    # A pass that failed mid-way while the engine went down backs off for minutes...
    stored = cluster.store.statuses["web"]
    stored.write = replace(
        stored.write,
        phase=Phase.FAILED,
        failure_kind="transient",
        attempts=8,
        next_attempt_at=cluster.clock.wall() + timedelta(seconds=128),
    )
    cluster.engine_back()
    cluster.drive(until_s=0)  # at once: no failure waits out its backoff
    assert_converged(cluster, "web", 2)
    assert_converged(cluster, "api", 1)
    for name in ("web", "api"):
        assert cluster.store.status(name).restart_count == 0, "an engine restart is no crash"
        assert cluster.store.status(name).replica_restarts == {}
    reasons = [e.message for _, e in cluster.store.events if e.action == "start"]
    assert sum("stopped by a Docker engine restart" in r for r in reasons) == 3


def test_exits_seen_while_the_engine_shuts_down_count_no_crash() -> None:
    """A stopping dockerd closes its listener, then stops its containers while it still
    answers on kept connections: the exits it causes are seen before its event stream
    ends. They are judged once the engine is back, as its own, not as crashes."""
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1", replicas=2)
    cluster.drive("web")
    cluster.runtime.shutting_down = True
    cluster.runtime.stop_everything()
    cluster.drive("web", until_s=3)
    assert cluster.store.status("web").restart_count == 0, "no crash counted meanwhile"
    assert all(c.state == RunState.EXITED for c in cluster.runtime.containers.values())
    cluster.engine_down()
    cluster.runtime.shutting_down = False
    cluster.engine_back()
    cluster.drive()
    assert cluster.store.status("web").restart_count == 0
    assert_converged(cluster, "web", 2)


def test_a_replica_crashing_after_the_engine_came_back_counts_again() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1")
    cluster.drive("web")
    cluster.engine_down()
    cluster.clock.advance(5)
    cluster.engine_back()
    cluster.drive(until_s=0)
    assert_converged(cluster, "web", 1)
    cluster.clock.advance(60)
    cluster.runtime.behaviours["web"] = Behaviour(exit_code=1)
    cluster.runtime.stop_everything()  # exits on its own, a minute after the engine returned
    cluster.drive("web", until_s=0)
    assert cluster.store.status("web").restart_count == 1


@pytest.mark.parametrize(
    ("point", "action", "resolution"),
    [("after:create", "create", "done"), ("after:start", "start", "done")],
)
def test_the_next_leader_resolves_what_a_crash_left_unfinished(
    point: str, action: str, resolution: str
) -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1")
    crash_at(point)
    with pytest.raises(SimulatedCrash):
        cluster.drive("web")
    [unfinished] = [i for i in cluster.store.intents if i.outcome is None]
    assert unfinished.action == action
    successor = cluster.successor()
    successor.drive()
    assert (unfinished.resolution, unfinished.resolved_by_term) == (resolution, 2)
    notes = [e for term, e in successor.store.events if term == 2 and e.kind == "note"]
    assert notes[0].message.startswith(f"term 1 left its {action} of berth-unit-web-0-")
    assert " unfinished: " in notes[0].message
    assert notes[0].metadata["resolution"] == resolution
    assert all(i.outcome is not None or i.resolution for i in successor.store.intents)
    assert_converged(successor, "web", 1)


def test_a_term_number_granted_again_to_the_same_node_still_resolves_what_it_finds() -> None:
    """Term 2 resolved term 1's unfinished create, on a primary that was then lost; the
    promoted standby (which never saw that resolution) grants term 2 again, to this same
    node: its first resync resolves the intent again rather than skip a term it thinks done."""
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1")
    crash_at("after:create")
    with pytest.raises(SimulatedCrash):
        cluster.drive("web")
    faults.arm(None)
    [unfinished] = [i for i in cluster.store.intents if i.outcome is None]
    cluster.store.term = cluster.leadership.term = 2
    cluster.controller.start_leading(lambda: False)  # elected (its resync: run below)
    assert cluster.controller.resync()
    assert unfinished.resolution == "done"
    unfinished.resolution = unfinished.resolved_by_term = None  # lost with the old primary
    cluster.controller.start_leading(lambda: False)  # term 2 again, from the new primary
    assert cluster.controller.resync()
    [again] = [i for i in cluster.store.intents if i.id == unfinished.id]
    assert (again.resolution, again.resolved_by_term) == ("done", 2)


def test_every_mutation_records_its_event_with_its_outcome() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1", replicas=2)
    cluster.drive("web")
    intents = [(i.action, i.target, i.outcome) for i in cluster.store.intents]
    actions = [
        (e.action, e.metadata["container"])
        for _, e in cluster.store.events
        if e.kind == "action" and e.action != "image"
    ]
    assert [(a, t) for a, t, _ in intents] == actions
    assert len(actions) == 4, "two creates and two starts"
    assert all(outcome == "ok" for _, _, outcome in intents)


def test_an_elected_but_untrusted_leader_requeues_instead_of_dropping() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1")
    cluster.leadership.trusted = False  # elected, but its trust window has not begun
    assert cluster.controller.resync() is False, "a fenced resync is no success"
    cluster.drive("web", until_s=0)
    assert cluster.last_outcome("web").result == Result.DEPOSED
    assert cluster.queue.next_due() is not None, "the fenced pass is requeued, not dropped"
    cluster.leadership.trusted = True
    cluster.drive(until_s=1)
    assert_converged(cluster, "web", 1)


def test_a_new_leaders_first_resync_is_retried_until_it_runs() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1")
    cluster.leadership.trusted = False
    attempts: list[bool] = []

    def still_leader() -> bool:
        attempts.append(True)
        if len(attempts) == 3:
            cluster.leadership.trusted = True  # the first heartbeat came back
        return True

    cluster.stopping.wait = lambda timeout=None: False  # type: ignore[method-assign]
    cluster.controller.resync_until_done(still_leader)
    assert len(attempts) == 3
    assert cluster.queue.get(timeout_s=0) == "web", "the resync ran and found the work"


def test_a_follower_drops_passes_it_may_not_run() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1")
    cluster.store.term += 1  # another replica leads
    cluster.drive("web")
    assert cluster.last_outcome("web").result == Result.DEPOSED
    assert cluster.queue.next_due() is None


def test_quoted_output_never_carries_the_deployments_own_secrets() -> None:
    cluster = Cluster()
    password = "correct-horse-battery"
    cluster.store.apply("web", image="berth-example/busybox:1", env={"DB_PASSWORD": password})
    cluster.runtime.behaviours["web"] = Behaviour(
        exit_code=1, logs=f"\x1b[31mconnecting as admin:{password}\x1b[0m\nrefused"
    )
    cluster.drive("web", until_s=30)
    written = [e.message for _, e in cluster.store.events] + [
        str(e.metadata) for _, e in cluster.store.events
    ]
    written.append(cluster.store.status("web").message)
    assert any("<env:DB_PASSWORD>" in text for text in written)
    assert not any(password in text for text in written)
    assert not any("\x1b" in text for text in written)


def test_a_command_that_ends_at_once_is_named_as_the_cause() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1", command=["sh"])
    cluster.runtime.behaviours["web"] = Behaviour(exit_code=0)
    cluster.drive("web", until_s=15)
    message = cluster.store.status("web").message
    assert "exited with code 0" in message
    assert "a replica's command (`command`, or the image's default) must keep running" in message


def test_a_labelled_container_berth_never_created_is_not_adopted() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1")
    cluster.drive("web")
    [ours] = cluster.runtime.of("web")
    # Someone makes a look-alike: Berth's labels, this cluster, the current spec hash, the
    # slot's name freed by removing ours behind Berth's back.
    cluster.runtime.containers.pop(ours.id)
    impostor = cluster.runtime.place(ours.request)
    cluster.runtime.start(impostor)
    cluster.drive("web")
    [replica] = cluster.runtime.of("web")
    assert replica.id != impostor, "replaced, not adopted"
    assert replica.id in cluster.store.container_records
    removed = [e for _, e in cluster.store.events if e.action == "remove"]
    assert [e.metadata["reason"] for e in removed] == ["unrecorded"]
    assert_converged(cluster, "web", 1)


def lose_the_records_of(cluster: Cluster, name: str) -> None:
    """What a failover to a standby behind the old primary loses: the deployment's creation
    records and its intents (their outcomes too)."""
    for replica_id, owner in list(cluster.store.container_records.items()):
        if owner == name:
            del (
                cluster.store.container_records[replica_id],
                cluster.store.container_names[replica_id],
            )
    cluster.store.intents = [i for i in cluster.store.intents if i.deployment != name]


def test_a_replica_whose_creation_record_was_lost_is_recorded_again_not_replaced() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1", replicas=2)
    cluster.drive("web")
    ours = {c.id for c in cluster.runtime.of("web")}
    lose_the_records_of(cluster, "web")
    successor = cluster.successor()
    successor.drive()
    assert {c.id for c in successor.runtime.of("web")} == ours, "kept, not replaced"
    assert set(successor.store.container_records) == ours, "the records written again"
    [note] = [e for t, e in successor.store.events if t == 2 and "written again" in e.message]
    assert note.level == "warning" and len(note.metadata["containers"]) == 2
    assert not [e for _, e in successor.store.events if e.action == "remove"]
    assert_converged(successor, "web", 2)


def test_a_look_alike_without_berths_proof_is_not_adopted_when_records_are_lost() -> None:
    """Labels copied (the proof of another database's key) or a forged proof: replaced."""
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1", replicas=2)
    cluster.drive("web")
    first, second = cluster.runtime.of("web")
    for container, proof in ((first, "0" * 64), (second, None)):
        cluster.runtime.containers.pop(container.id)
        labels = dict(container.request.labels)
        if proof is None:
            labels.pop(LABEL_PROOF)
        else:
            labels[LABEL_PROOF] = proof
        look_alike = cluster.runtime.place(replace(container.request, labels=labels))
        cluster.runtime.start(look_alike)
    lose_the_records_of(cluster, "web")
    strangers = {c.id for c in cluster.runtime.of("web")}
    successor = cluster.successor()
    successor.drive()
    assert not strangers & {c.id for c in successor.runtime.of("web")}, "replaced"
    removed = [e for _, e in successor.store.events if e.action == "remove"]
    assert [e.metadata["reason"] for e in removed] == ["unrecorded", "unrecorded"]
    assert_converged(successor, "web", 2)


def test_an_image_appearing_retries_what_failed_for_want_of_it_at_once() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/later:1")
    cluster.store.apply("flaky", image="berth-example/busybox:1")
    cluster.runtime.fail("create", DockerServerError("busy"))
    cluster.drive("web", "flaky", until_s=0)
    assert cluster.store.status("web").failure_kind == "permanent"
    assert cluster.store.status("flaky").failure_kind == "transient"
    cluster.runtime.images.add("berth-example/later:1")  # docker load, pull or tag
    cluster.controller.release_holds_next(Release.PERMANENT)  # what the image watcher does
    assert cluster.controller.resync() is True
    assert cluster.queue.get(timeout_s=0) == "web", "due now, not in ten minutes"
    assert cluster.queue.get(timeout_s=0) is None, "a transient backoff is not cut short"


def test_a_secret_reaches_the_container_and_nothing_else_and_a_new_value_rolls_out() -> None:
    cluster = Cluster()
    value = "sk_live_the-first-value-4242"
    cluster.store.set_secret("stripe-key", value)
    cluster.store.apply(
        "pay",
        image="berth-example/busybox:1",
        env={"API_KEY": {"secret": "stripe-key"}, "MODE": "live"},
    )
    cluster.runtime.behaviours["pay"] = Behaviour(exit_code=1, logs=f"booting with {value}\n")
    cluster.drive("pay")
    [container] = cluster.runtime.of("pay")
    assert container.request.environment == {"API_KEY": value, "MODE": "live"}
    assert value not in repr(container.request)
    recorded = repr([event for _, event in cluster.store.events])
    recorded += repr(cluster.store.status("pay"))
    assert value not in recorded, "the crash's log tail quoted the secret"
    assert "<env:API_KEY>" in recorded, "the log tail was quoted, redacted"

    cluster.runtime.behaviours["pay"] = Behaviour()
    cluster.store.set_secret("stripe-key", "sk_live_the-second-value-4343")
    assert cluster.store.generations["pay"] == 2
    cluster.drive("pay")
    [replaced] = cluster.runtime.of("pay")
    assert replaced.id != container.id
    assert replaced.request.environment["API_KEY"] == "sk_live_the-second-value-4343"
    assert_converged(cluster, "pay", 1)


def test_a_replica_removed_behind_berths_back_mid_rollout_is_planned_again_not_failed() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1", replicas=2)
    removed: list[str] = []

    def remove_the_first_created() -> None:
        if not removed:  # someone removes it between its create and its start
            victim = next(iter(cluster.runtime.containers))
            removed.append(victim)
            del cluster.runtime.containers[victim]

    faults.arm("after:create", remove_the_first_created)
    cluster.drive("web")
    assert removed, "the removal happened"
    assert_converged(cluster, "web", 2)
    assert Phase.FAILED not in cluster.store.phase_events("web"), "the world changed, not the spec"
    said = [e.message for _, e in cluster.store.events if e.deployment == "web"]
    assert any(m.startswith("planning again: a replica vanished") for m in said), said
    assert cluster.store.status("web").attempts == 0


@pytest.mark.parametrize(
    ("phase", "recorded", "said"),
    [
        (Phase.ACTIVE, 0, 100),  # a row written before schema 25, or a bug: complete
        (Phase.ACTIVE, 100, 100),
        (Phase.HEALTH_CHECK, 66, 66),  # a pass that writes only a message keeps the bar
        (Phase.CREATING, 0, 0),
        (None, 0, 0),  # a new deployment
    ],
)
def test_a_status_says_the_progress_it_last_wrote_and_active_is_complete(
    phase: Phase | None, recorded: int, said: int
) -> None:
    assert held_progress(phase, recorded) == said


def test_after_acting_a_pass_reads_back_only_what_it_changed() -> None:
    """A new deployment's pass lists it once, before acting, and reads its new containers
    back one by one (a Docker list walks every container the engine has); a pass that
    changed more than `READ_ONE_BY_ONE_AT_MOST`, or left one it had untouched, lists again.
    Either way the pass settles on what the engine shows."""
    cluster = Cluster()
    cluster.store.apply("one", image="berth-example/busybox:1", replicas=2)
    cluster.runtime.calls.clear()
    cluster.reconciler.reconcile("one")
    assert_converged(cluster, "one", 2)
    calls = cluster.runtime.calls
    assert (calls.count("list"), calls.count("inspect")) == (1, 2), calls
    cluster.store.apply("one", image="berth-example/busybox:1", replicas=3)
    calls.clear()
    cluster.reconciler.reconcile("one")  # scaled up: two untouched containers stand
    assert_converged(cluster, "one", 3)
    assert (calls.count("list"), calls.count("inspect")) == (2, 0), calls
    cluster.store.apply("many", image="berth-example/busybox:1", replicas=3)
    calls.clear()
    cluster.reconciler.reconcile("many")
    assert_converged(cluster, "many", 3)
    assert (calls.count("list"), calls.count("inspect")) == (2, 0), calls


def test_a_container_gone_before_the_read_back_is_not_counted() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1")
    start = cluster.runtime.start

    def start_then_lose(replica_id: str, from_state: RunState = RunState.CREATED) -> None:
        start(replica_id, from_state)
        del cluster.runtime.containers[replica_id]  # removed behind the pass's back

    cluster.runtime.start = start_then_lose  # type: ignore[method-assign]
    outcome = cluster.reconciler.reconcile("web")
    assert cluster.store.status("web").phase != Phase.ACTIVE
    assert cluster.store.status("web").ready_replicas == 0
    assert outcome.requeue_after is not None
