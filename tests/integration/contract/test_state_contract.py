"""The loop's Postgres ports, one contract for the fake and the real stores: what an
operator declares is what the loop reads, generations, fencing, the stuck count, the
mutation log and its resolution, revisions, builds and secrets."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.loop.status import held_progress
from controller.model.errors import BerthError, DatabaseRejected
from controller.model.phases import SETTLED_PHASES, Phase
from controller.model.records import (
    Event,
    MutationAction,
    Resolution,
    StatusChange,
    StatusWrite,
)
from controller.model.spec import SPEC_FIELDS
from tests.integration.contract.conftest import StoreBackend, deposed

IMAGE = "berth-example/busybox:1"
LATER = datetime(2100, 1, 1, tzinfo=UTC)  # a retry not due yet, on any clock
# Every field set away from its default (the policy-gated ones need an administrator's
# grant, which is the database's business alone: left at their defaults).
EVERY_FIELD: dict[str, Any] = {
    "image": IMAGE,
    "priority": 5,
    "command": ["/bin/serve"],
    "env": {"MODE": "live"},
    "ports": [{"container": 8080, "host": None, "protocol": "tcp"}],
    "replicas": 2,
    "healthcheck": {"test": ["CMD", "true"], "interval_s": 1.0},
    "labels": {"team": "payments"},
    "routes": [{"host": "web.localhost", "port": 8080, "path_prefix": "/"}],
    "rollout": {"drain_s": 2.0},
    "resources": {"memory": 67108864, "cpus": 0.5, "pids": 100},
    "volumes": [{"name": "data", "target": "/data"}],
    "networks": ["backend"],
    "stop_signal": "SIGQUIT",
    "stop_grace_s": 5.0,
    "user": "1000",
    "read_only": True,
    "cap_add": ["NET_BIND_SERVICE"],
    "cap_drop": ["ALL"],
    "init": True,
    "placement": {"constraints": ["node.labels.zone==a"], "spread": "zone", "max_per_node": 1},
}
GATED = {"source", "privileged", "network_mode", "pid_mode", "ipc_mode", "devices"}


def status(name: str, phase: Phase, generation: int = 1, ready: int = 0) -> StatusWrite:
    return StatusWrite(name, phase, held_progress(phase, 0), generation, 1, ready)


def test_every_declared_field_is_read_back_as_declared(store_backend: StoreBackend) -> None:
    assert set(EVERY_FIELD) | GATED == set(SPEC_FIELDS), "a field this contract does not set"
    store_backend.declare("web", **EVERY_FIELD)
    record = store_backend.stores.desired.fetch_one("web")
    assert record is not None and record.present and record.spec is not None
    read = {key: value for key, value in record.spec.items() if value not in (None, 0)}
    expected = {"name": "web", **EVERY_FIELD, "priority": 5}
    assert {k: read.get(k) for k in expected} == expected
    assert [r.name for r in store_backend.stores.desired.fetch_all()] == ["web"]


def test_a_new_row_is_generation_one_and_only_a_change_moves_it(
    store_backend: StoreBackend,
) -> None:
    store_backend.declare("web", image=IMAGE, replicas=1)
    assert store_backend.generation("web") == 1
    store_backend.declare("web", image=IMAGE, replicas=1)
    assert store_backend.generation("web") == 1, "the same row again: nothing moved"
    store_backend.declare("web", image=IMAGE, replicas=3)
    assert store_backend.generation("web") == 2


def test_priority_moves_no_generation(store_backend: StoreBackend) -> None:
    store_backend.declare("web", image=IMAGE)
    store_backend.declare("web", image=IMAGE, priority=9)
    assert store_backend.generation("web") == 1


def test_a_status_write_is_fenced_by_the_term(store_backend: StoreBackend) -> None:
    first = store_backend.new_term()
    store_backend.declare("web", image=IMAGE)
    stores = store_backend.stores
    stores.status.record(first, status("web", Phase.QUEUED), create_row=True)
    record = stores.desired.fetch_one("web")
    assert record is not None and record.phase == Phase.QUEUED
    second = store_backend.new_term()
    assert deposed(lambda: stores.status.record(first, status("web", Phase.ACTIVE)))
    stores.status.record(second, status("web", Phase.ACTIVE, ready=1))
    record = stores.desired.fetch_one("web")
    assert record is not None and record.phase == Phase.ACTIVE and record.ready_replicas == 1


def test_a_status_reads_back_its_progress_and_active_is_complete(
    store_backend: StoreBackend,
) -> None:
    """The progress written is the progress a new pass begins from; `active` at less than
    100% is refused (schema 25), not written."""
    fence = store_backend.new_term()
    store_backend.declare("web", image=IMAGE)
    stores = store_backend.stores
    stores.status.record(fence, status("web", Phase.QUEUED), create_row=True)
    stores.status.record(fence, replace(status("web", Phase.HEALTH_CHECK), phase_progress=66))
    record = stores.desired.fetch_one("web")
    assert record is not None and (record.phase, record.phase_progress) == (Phase.HEALTH_CHECK, 66)
    with pytest.raises(DatabaseRejected, match="deployment_status_active_is_complete"):
        stores.status.record(fence, replace(status("web", Phase.ACTIVE), phase_progress=0))
    record = stores.desired.fetch_one("web")
    assert record is not None and record.phase == Phase.HEALTH_CHECK


def test_a_term_granted_twice_lets_only_its_holder_write(store_backend: StoreBackend) -> None:
    """A failover can lose the primary's last claim: the promoted standby grants the same
    term number again, to another node. The fence names the holder with the term, so the
    node the database no longer knows as holder is deposed (RECONCILIATION.md, "The
    database's own failover")."""
    lost = store_backend.new_term()
    store_backend.declare("web", image=IMAGE)
    stores = store_backend.stores
    stores.status.record(lost, status("web", Phase.QUEUED), create_row=True)
    again = store_backend.new_term(lost.term)
    assert again.term == lost.term and again.node_id != lost.node_id
    assert deposed(lambda: stores.status.record(lost, status("web", Phase.ACTIVE)))
    stores.status.record(again, status("web", Phase.ACTIVE, ready=1))
    record = stores.desired.fetch_one("web")
    assert record is not None and record.phase == Phase.ACTIVE


def test_the_events_of_one_write_are_kept_in_their_order(store_backend: StoreBackend) -> None:
    """Written in one statement (`insert_events`), they read back as listed, metadata and
    phases included."""
    fence = store_backend.new_term()
    store_backend.declare("web", image=IMAGE)
    events = [
        Event(deployment="web", kind="phase", message=f"step {n}", phase_to=Phase.CREATING)
        for n in range(12)
    ]
    events.append(Event(deployment="web", kind="note", message="last", metadata={"n": [1, 2]}))
    store_backend.stores.status.record(fence, status("web", Phase.CREATING), events, True)
    assert store_backend.event_messages("web") == [e.message for e in events]


def test_phase_updated_at_moves_only_with_the_phase(store_backend: StoreBackend) -> None:
    fence = store_backend.new_term()
    store_backend.declare("web", image=IMAGE)
    stores = store_backend.stores
    stores.status.record(fence, status("web", Phase.STARTING), create_row=True)
    first = stores.desired.fetch_one("web")
    stores.status.record(fence, StatusWrite("web", Phase.STARTING, 50, 1, 1, 0, "half"))
    again = stores.desired.fetch_one("web")
    assert first is not None and again is not None
    assert first.phase_updated_at == again.phase_updated_at


@pytest.mark.parametrize("phase", sorted(SETTLED_PHASES | {Phase.STARTING}))
def test_a_settled_phase_ends_the_stuck_count(store_backend: StoreBackend, phase: Phase) -> None:
    fence = store_backend.new_term()
    store_backend.declare("web", image=IMAGE)
    stores = store_backend.stores
    stores.status.record(fence, status("web", Phase.STARTING), create_row=True)
    note = Event(deployment="web", kind="error", level="warning", message="stuck")
    stores.status.mark_stuck(fence, "web", 1, note)
    stores.status.mark_stuck(fence, "web", 1, note)
    assert store_backend.stuck_resumes("web") == 2
    stores.status.record(fence, status("web", phase))
    expected = 0 if phase in SETTLED_PHASES else 2
    assert store_backend.stuck_resumes("web") == expected


def test_the_mutation_log_records_intents_outcomes_and_resolutions(
    store_backend: StoreBackend,
) -> None:
    fence = store_backend.new_term()
    store_backend.declare("web", image=IMAGE)
    log = store_backend.stores.mutations
    with log.mutation(fence, "web", MutationAction.CREATE, "berth-web-0-aaaa") as done:
        in_flight = store_backend.stores.desired.fetch_one("web") or _no()
        assert in_flight.creation_records.pending == {"berth-web-0-aaaa"}, "a create in flight"
        done.created = "c" * 64  # a create's outcome records the container as Berth's
    record = store_backend.stores.desired.fetch_one("web")
    assert record is not None and "c" * 64 in record.creation_records.ids
    assert not record.creation_records.pending
    with pytest.raises(BerthError), log.mutation(fence, "web", MutationAction.START, "x"):
        raise BerthError("the call failed")
    assert log.unfinished_intents(fence) == [], "finished, whatever the outcome"
    # A leader that dies mid-call leaves an intent without outcome:
    dying = log.mutation(fence, "web", MutationAction.REMOVE, "berth-web-0-aaaa")
    dying.__enter__()
    successor = store_backend.new_term()
    [left] = log.unfinished_intents(successor)
    assert (left.term, left.action, left.target) == (
        fence.term,
        MutationAction.REMOVE,
        "berth-web-0-aaaa",
    )
    event = Event(deployment="web", kind="note", level="info", message="resolved")
    log.resolve_intent(successor, left, Resolution.DONE, event)
    assert log.unfinished_intents(successor) == []


def test_an_intent_and_the_status_it_carries_are_fenced_together(
    store_backend: StoreBackend,
) -> None:
    """The intent, the status row it carries (made first for a new deployment) and its
    events: all written under the current term, or none of them (one statement in
    Postgres, schema 26)."""
    old = store_backend.new_term()
    store_backend.declare("web", image=IMAGE)
    log = store_backend.stores.mutations
    current = store_backend.new_term()
    entering = Event(deployment="web", kind="phase", message="creating", phase_to=Phase.CREATING)
    carried = StatusChange(status("web", Phase.CREATING), (entering,), create_row=True)
    refused = log.mutation(old, "web", MutationAction.CREATE, "berth-web-0-aaaa", carried)
    assert deposed(refused.__enter__)
    record = store_backend.stores.desired.fetch_one("web")
    assert record is not None and record.phase is None, "no status row written"
    assert log.unfinished_intents(current) == [], "no intent written"
    with log.mutation(current, "web", MutationAction.CREATE, "berth-web-0-aaaa", carried):
        in_flight = store_backend.stores.desired.fetch_one("web") or _no()
        assert in_flight.phase == Phase.CREATING
        assert in_flight.creation_records.pending == {"berth-web-0-aaaa"}
    assert store_backend.event_messages("web") == ["creating"]


def test_lost_creation_records_are_written_again_fenced_under_a_steady_key(
    store_backend: StoreBackend,
) -> None:
    """The proof key is the database's, read back the same each time; a creation record
    written again reads back by id and name, with its event, and only the leader writes."""
    log = store_backend.stores.mutations
    key = log.proof_key()
    assert len(key) >= 8 and log.proof_key() == key
    old = store_backend.new_term()
    store_backend.declare("web", image=IMAGE)
    fence = store_backend.new_term()
    note = Event(deployment="web", kind="note", level="warning", message="written again")
    found = [("d" * 64, "berth-web-0-bbbb")]
    assert deposed(lambda: log.record_again(old, "web", found, note))
    assert not (store_backend.stores.desired.fetch_one("web") or _no()).creation_records.ids
    log.record_again(fence, "web", found, note)
    records = (store_backend.stores.desired.fetch_one("web") or _no()).creation_records
    assert (records.ids, records.names) == ({"d" * 64}, {"berth-web-0-bbbb"})
    assert "written again" in store_backend.event_messages("web")


def _no() -> Any:
    raise AssertionError("no record")


def test_a_failed_deployment_is_released(store_backend: StoreBackend) -> None:
    fence = store_backend.new_term()
    store_backend.declare("web", image=IMAGE)
    store_backend.declare("api", image=IMAGE)
    stores = store_backend.stores
    for name, kind in (("web", "permanent"), ("api", "transient")):
        write = StatusWrite(
            name, Phase.FAILED, 0, 1, 1, 0, "boom", failure_kind=kind, next_attempt_at=LATER
        )
        stores.status.record(fence, write, create_row=True)
    assert stores.status.release_holds(fence, permanent_only=True) == ["web"]
    assert stores.status.release_holds(fence) == ["api"], "web is due already"


def test_forget_drops_a_deleted_deployments_status(store_backend: StoreBackend) -> None:
    fence = store_backend.new_term()
    store_backend.declare("web", image=IMAGE)
    store_backend.stores.status.record(fence, status("web", Phase.ACTIVE), create_row=True)
    store_backend.delete("web")
    gone = store_backend.stores.desired.fetch_one("web")
    assert gone is not None and not gone.present and gone.spec is None
    store_backend.stores.status.forget(fence, "web")
    assert store_backend.stores.desired.fetch_one("web") is None


def test_a_served_revision_is_read_with_the_deployment(store_backend: StoreBackend) -> None:
    fence = store_backend.new_term()
    store_backend.declare("web", image=IMAGE)
    stores = store_backend.stores
    stores.status.record(fence, status("web", Phase.ACTIVE), create_row=True)
    spec = {"name": "web", "image": IMAGE}
    first = stores.revisions.serve_revision(fence, "web", 1, spec, "h1", IMAGE)
    assert stores.revisions.serve_revision(fence, "web", 1, spec, "h1", IMAGE) == first
    rolled = stores.revisions.record_rollback(fence, "web", 2, spec, "h2", IMAGE, "crash loop")
    assert rolled > first
    record = stores.desired.fetch_one("web")
    assert record is not None
    assert (record.serving_revision, record.serving_hash) == (first, "h1")


def test_a_queued_build_is_the_current_one_with_its_place(store_backend: StoreBackend) -> None:
    fence = store_backend.new_term()
    source = {"archive": {"sha256": "a" * 64}}
    store_backend.declare("web", source=source)
    builds = store_backend.stores.builds
    assert builds.current_build("web") is None
    queued = builds.enqueue_build(fence, "web", 1, source, "key", 0)
    current = builds.current_build("web")
    assert current is not None and current.id == queued.id
    assert (current.position, current.queue_length) == (1, 1)


def test_a_secret_is_read_by_name_and_a_new_value_moves_its_users(
    store_backend: StoreBackend,
) -> None:
    store_backend.set_secret("key", "one")
    store_backend.declare("web", image=IMAGE, env={"K": {"secret": "key"}})
    assert store_backend.stores.desired.secret_values({"key", "missing"}) == {"key": "one"}
    before = store_backend.generation("web")
    store_backend.set_secret("key", "two")
    assert store_backend.generation("web") == before + 1
    assert store_backend.stores.desired.secret_values({"key"}) == {"key": "two"}
