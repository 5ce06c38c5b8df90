"""High availability with several real `berth run` processes against one Postgres."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controller.app.daemon import Daemon
from tests.integration.conftest import Containers, Sql, report, settled, wait_for
from tests.integration.replicas import ReplicaSet

pytestmark = pytest.mark.integration


def test_exactly_one_leader_among_three(replicas: ReplicaSet) -> None:
    started = [replicas.start() for _ in range(3)]
    leader = replicas.wait_for_leader()

    def roles() -> list[str] | None:
        statuses = [replica.status() for replica in started]
        if any(status is None for status in statuses):
            return None
        found = sorted(status["node"]["role"] for status in statuses if status)
        return found if found == ["leader", "standby", "standby"] else None

    wait_for(roles, what="one leader, two standbys")
    status = wait_for(
        lambda: (s := leader.status()) and s.get("leader") and s, what="a snapshot with the leader"
    )
    assert status["leader"]["term"] == replicas.term() == status["node"]["term"]
    nodes = wait_for(
        lambda: (
            (
                rows := replicas.sql(
                    "SELECT role FROM berth_nodes WHERE cluster = %s", [replicas.cluster]
                )
            )
            and len(rows) == 3
            and rows
        ),
        what="three nodes reported",
    )
    assert sorted(n["role"] for n in nodes) == ["leader", "standby", "standby"]
    shown = subprocess.run(
        [sys.executable, "-m", "controller.app.cli", "status", "-o", "json"],
        env={
            **os.environ,
            "BERTH_DATABASE_URL": replicas.sql.url,
            "BERTH_CLUSTER": replicas.cluster,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    body = json.loads(shown.stdout)
    assert body["leader"]["term"] == replicas.term()
    assert body["leader"]["holder_pid"] == leader.pid
    assert sorted(node["role"] for node in body["nodes"]) == ["leader", "standby", "standby"]


def test_sigkill_leader_a_follower_takes_over_and_acts(
    replicas: ReplicaSet, sql: Sql, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(3):
        replicas.start()
    old = replicas.wait_for_leader()
    old_term = replicas.term()
    sql.insert("before-kill")
    wait_for(lambda: sql.converged("before-kill"), what="converged under the first leader")

    killed_at = time.time()
    old.process.send_signal(signal.SIGKILL)
    sql.insert("after-kill")
    new = replicas.wait_for_leader(other_than_term=old_term)
    assert new.pid != old.pid
    first = wait_for(
        lambda: [m for m in replicas.mutations() if m["term"] > old_term], what="new leader acting"
    )[0]
    wait_for(lambda: sql.converged("after-kill"), what="converged under the new leader")
    latency = first["started_at"].timestamp() - killed_at
    report(capsys, f"SIGKILL -> new leader's first mutation: {latency * 1000:.0f} ms")
    leader_row = replicas.leader_row()
    assert leader_row is not None
    assert str(first["node_id"]) == str(leader_row["holder_id"]), (
        "the first act is the new leader's"
    )


def test_terminated_lock_session_steps_down_before_the_new_leader_acts(
    replicas: ReplicaSet, sql: Sql
) -> None:
    for _ in range(3):
        replicas.start()
    old = replicas.wait_for_leader()
    old_term = replicas.term()
    names = [f"busy-{i}" for i in range(6)]
    sql(
        "INSERT INTO deployments (name, image, replicas) "
        "SELECT unnest(%s::text[]), 'berth-example/busybox:1', 3",
        [names],
    )
    wait_for(
        lambda: any(m["term"] == old_term for m in replicas.mutations()),
        interval_s=0.01,
        what="the old leader mutating",
    )
    terminated = sql(
        "SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity "
        "WHERE application_name = %s",
        [f"berth-lock {replicas.cluster} {replicas.leader_row()['holder_id']}"],  # type: ignore[index]
    )
    assert terminated and terminated[0]["done"]
    replicas.wait_for_leader(other_than_term=old_term)
    wait_for(lambda: all(sql.converged(n) for n in names), timeout_s=120, what="all converged")

    # The guarantee (RECONCILIATION.md, "What the mutation log proves"): a deposed leader
    # starts no Docker call after its successor's first; a call it had already started may
    # still finish after (no Docker call holds the term row any more, so that a frozen
    # leader cannot stall the election).
    mutations = replicas.mutations()
    executed = [m for m in mutations if m["outcome"] in ("ok", "error")]
    old_calls = [m["called_at"] for m in executed if m["term"] == old_term]
    new_calls = [m["called_at"] for m in executed if m["term"] > old_term]
    assert old_calls and new_calls, "both terms must have acted for the check to mean anything"
    assert max(old_calls) <= min(new_calls), "the old leader started a call after the new one"
    unfinished = [m for m in mutations if m["outcome"] is None]
    assert all(m["resolution"] for m in unfinished), f"unresolved intents: {unfinished}"
    in_flight = max(m["finished_at"] for m in executed if m["term"] == old_term) - min(new_calls)
    print(
        f"[measured] old term's last call finished {in_flight.total_seconds():.3f}s "
        "after the new term's first call started (negative: before)"
    )
    assert old.alive(), "a deposed leader stands by; it does not die"


def test_a_paused_leader_performs_no_mutation_after_waking(replicas: ReplicaSet, sql: Sql) -> None:
    for _ in range(2):
        replicas.start()
    old = replicas.wait_for_leader()
    old_row = replicas.leader_row()
    assert old_row is not None
    sql.insert("paused-a")
    wait_for(lambda: sql.converged("paused-a"), what="converged")

    old.process.send_signal(signal.SIGSTOP)
    stopped_at = time.time()
    # Work arrives while the leader is frozen; only a new leader may do it.
    sql.insert("paused-b", replicas=2)
    replicas.wait_for_leader(other_than_term=old_row["term"], timeout_s=30)
    wait_for(lambda: sql.converged("paused-b"), what="converged under the new leader")
    old.process.send_signal(signal.SIGCONT)
    woke_at = time.time()
    # Give the woken process the chance to misbehave: it has work queued from before.
    sql("UPDATE deployments SET replicas = 3 WHERE name = 'paused-b'")
    wait_for(lambda: (s := sql.converged("paused-b")) and s["ready_replicas"] == 3, what="scaled")
    wait_for(
        lambda: (s := old.status()) and s["node"]["role"] == "standby",
        what="old leader standing by",
    )
    late = [
        m
        for m in replicas.mutations()
        if str(m["node_id"]) == str(old_row["holder_id"])
        and m["started_at"].timestamp() > stopped_at
        and m["outcome"] != "fenced"
    ]
    assert late == [], f"the paused leader mutated after waking at {woke_at}: {late}"


def test_postgres_restart_reelects_and_resumes(
    tmp_path: Path, cluster: str, containers: Containers, private_postgres: tuple[Any, Sql]
) -> None:
    server, sql = private_postgres
    replica_set = ReplicaSet(sql, cluster, tmp_path)
    try:
        replica_set.start()
        replica_set.start()
        replica_set.wait_for_leader()
        term = replica_set.term()
        sql.insert("survivor")
        wait_for(lambda: sql.converged("survivor"), what="converged")

        server.stop()
        server.start()
        replica_set.wait_for_leader(other_than_term=term, timeout_s=60)
        sql.insert("after-restart", replicas=2)
        wait_for(
            lambda: sql.converged("after-restart"), timeout_s=60, what="converged after restart"
        )
        assert all(r.alive() for r in replica_set.replicas)
        assert len(containers.find("survivor")) == 1
    finally:
        replica_set.stop_all()


HEALTHCHECK = {
    "test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"],
    "interval_s": 0.5,
    "timeout_s": 2,
    "retries": 3,
}
CRASH_POINTS = [
    "before:pulling_image",
    "before:creating",
    "after:create#2",
    "before:starting",
    "after:start#2",
    "before:health_check",
    "before:active",
    "after:remove#2",
]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_at_a_phase_boundary_is_resumed_by_the_next_leader(
    replicas: ReplicaSet, sql: Sql, containers: Containers, point: str
) -> None:
    replacing = point.startswith("after:remove")
    doomed = replicas.start(BERTH_CRASH_AT="" if replacing else point)
    replicas.wait_for_leader()
    if replacing:  # converge first, then crash while replacing the containers
        sql.insert("resumed", replicas=3, healthcheck=HEALTHCHECK)
        wait_for(lambda: sql.converged("resumed"), what="first generation")
        doomed.process.kill()
        doomed.process.wait(10)
        term = replicas.term()
        doomed = replicas.start(BERTH_CRASH_AT=point)
        replicas.wait_for_leader(other_than_term=term)
        sql("UPDATE deployments SET image = 'berth-example/busybox:2' WHERE name = 'resumed'")
    else:
        sql.insert("resumed", replicas=3, healthcheck=HEALTHCHECK)
    wait_for(lambda: not doomed.alive(), what=f"the crash at {point}")
    assert doomed.process.returncode == -signal.SIGKILL
    replicas.start()
    status = wait_for(
        lambda: sql.converged("resumed"), timeout_s=60, what="converged after takeover"
    )
    assert status["phase"] == "active" and status["ready_replicas"] == 3
    settled(sql, containers, "resumed", 3)
    found = containers.find()
    assert sorted(int(c["Labels"]["io.berth.replica"]) for c in found) == [0, 1, 2]
    assert {c["Labels"]["io.berth.deployment"] for c in found} == {"resumed"}, "no orphans"
    assert all(c["State"] == "running" for c in found)
    hashes = {c["Labels"]["io.berth.spec-hash"] for c in found}
    assert len(hashes) == 1
    # The audit trail tells the story: the new leader's term wrote the last phase, `active`.
    phases = sql(
        "SELECT phase_to, leader_term FROM deployment_events"
        " WHERE deployment = 'resumed' AND kind = 'phase' ORDER BY id"
    )
    assert phases[-1]["phase_to"] == "active"
    assert phases[-1]["leader_term"] == replicas.term()
    assert "queued" in [row["phase_to"] for row in phases]


def test_chaos_random_leader_kills_while_deployments_change(
    replicas: ReplicaSet, sql: Sql, containers: Containers, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(20261122)
    for _ in range(3):
        replicas.start()
    replicas.wait_for_leader()
    desired = {f"chaos-{i:02d}": rng.randint(1, 2) for i in range(20)}
    sql(
        "INSERT INTO deployments (name, image, replicas) "
        "SELECT unnest(%s::text[]), 'berth-example/busybox:1', unnest(%s::int[])",
        [list(desired), list(desired.values())],
    )
    # What a leader killed at any step must never leave: two containers of one revision in
    # one replica slot (a duplicate), or a slot holding more than the two revisions a
    # start-first rollout runs side by side (the old one until the new one is ready;
    # container names carry the revision for this, model/names.container_name).
    double_slots: list[tuple[str, ...]] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            found = containers.find()
            revisions = Counter(
                (
                    c["Labels"]["io.berth.deployment"],
                    c["Labels"]["io.berth.replica"],
                    c["Labels"].get("io.berth.spec-hash", ""),
                )
                for c in found
            )
            slots = Counter(
                (c["Labels"]["io.berth.deployment"], c["Labels"]["io.berth.replica"]) for c in found
            )
            double_slots.extend(slot for slot, count in revisions.items() if count > 1)
            double_slots.extend(slot for slot, count in slots.items() if count > 2)
            sampling.wait(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    kills = 0
    try:
        for round_number in range(6):
            name = rng.choice(sorted(desired))
            change = rng.choice(["scale", "env", "delete", "insert"])
            if change == "scale":
                desired[name] = rng.randint(0, 3)
                sql("UPDATE deployments SET replicas = %s WHERE name = %s", [desired[name], name])
            elif change == "env":
                sql(
                    "UPDATE deployments SET env = %s WHERE name = %s",
                    [f'{{"ROUND": "{round_number}"}}', name],
                )
            elif change == "delete":
                del desired[name]
                sql("DELETE FROM deployments WHERE name = %s", [name])
            else:
                new_name = f"chaos-new-{round_number}"
                desired[new_name] = 1
                sql.insert(new_name)
            term = replicas.term()
            # Kill mid-work when there is work; a change may need none (scale to the same).
            before = len(replicas.mutations())
            with contextlib.suppress(AssertionError):
                wait_for(
                    lambda before=before: len(replicas.mutations()) > before,  # type: ignore[misc]
                    timeout_s=5,
                    interval_s=0.01,
                    what="the leader at work",
                )
            leader = replicas.leader()
            if leader is not None:
                leader.process.send_signal(signal.SIGKILL)
                kills += 1
            replicas.start()
            replicas.wait_for_leader(other_than_term=term)

        def settled() -> bool:
            counts = Counter(c["Labels"]["io.berth.deployment"] for c in containers.find())
            wanted = {name: count for name, count in desired.items() if count}
            return counts == wanted and all(sql.converged(name) for name in desired)

        wait_for(settled, timeout_s=180, what="every deployment converged after the chaos")
    finally:
        sampling.set()
        sampler.join()
    assert kills >= 5
    assert double_slots == [], f"replica slots that held a duplicate: {set(double_slots)}"
    leftover = {c["Labels"]["io.berth.deployment"] for c in containers.find()} - set(desired)
    assert leftover == set(), "orphans"
    statuses = {r["name"] for r in sql("SELECT name FROM deployment_status")}
    assert statuses == set(desired)
    report(capsys, f"chaos: {kills} leader kills, final term {replicas.term()}, converged")


def test_failover_benchmark_smoke() -> None:
    """The benchmark must not rot: one short trial, figures printed, exit 0."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "controller.app.cli",
            "bench",
            "failover",
            "--trials",
            "1",
            "--replicas",
            "2",
            "--deployments",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "kill -> new leader's first mutation" in result.stdout


def test_a_stuck_phase_is_reported_and_resumed(
    start_daemon: Callable[..., Daemon], sql: Sql, containers: Containers
) -> None:
    """A deployment left in `creating` long ago by an older term (as a crashed leader
    would leave it, its container never made) is found stuck, recorded, and finished."""
    sql.insert("left-behind", replicas=2)
    sql(
        "INSERT INTO deployment_status (name, phase, phase_updated_at, observed_generation,"
        " desired_replicas, leader_term) VALUES ('left-behind', 'creating',"
        " now() - interval '2 hours', 1, 2, 0)"
    )
    start_daemon(stuck_deadline_by_phase_s={"creating": 60})
    status = wait_for(lambda: sql.converged("left-behind"), what="resumed and converged")
    assert status["ready_replicas"] == 2
    [stuck] = sql(
        "SELECT message, metadata FROM deployment_events WHERE deployment = 'left-behind'"
        " AND kind = 'error' AND message LIKE 'stuck%'"
    )
    assert "stuck in creating for" in stuck["message"]
    assert "(written by term 0)" in stuck["message"]
    assert len(containers.find("left-behind")) == 2
