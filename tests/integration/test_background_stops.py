"""Stops off the pass, on real Docker: replicas whose process ignores SIGTERM (PID 1 with
no handler, as many real images) wait out their whole stop grace, and neither a rollout nor
a delete waits for them: the rollout is `active` before the old replicas are gone, and
twenty deletions stop their containers side by side."""

from __future__ import annotations

from typing import Any

import pytest

from controller.app.daemon import Daemon
from tests.integration.conftest import EXAMPLE_IMAGE_2, Containers, Sql, wait_for
from tests.integration.replicas import ReplicaSet

pytestmark = pytest.mark.integration
STUBBORN: dict[str, Any] = {"command": ["sleep", "3600"], "stop_grace_s": 4}  # PID 1: no SIGTERM


def test_a_rollout_of_replicas_ignoring_sigterm_is_active_before_they_are_gone(
    daemon: Daemon, sql: Sql, containers: Containers
) -> None:
    sql.insert("stubborn", replicas=3, **STUBBORN)
    wait_for(lambda: sql.converged("stubborn"), timeout_s=60, what="converged")
    sql("UPDATE deployments SET image = %s WHERE name = 'stubborn'", [EXAMPLE_IMAGE_2])
    wait_for(
        lambda: (row := sql.converged("stubborn")) and row["observed_generation"] == 2,
        timeout_s=60,
        what="the update active",
    )
    still = [c for c in containers.find() if "busybox:1" in c.get("Image", "")]
    assert still, "old replicas still waiting out their grace: the rollout did not wait"
    wait_for(
        lambda: not [c for c in containers.find() if "busybox:1" in c.get("Image", "")],
        timeout_s=30,
        what="the old replicas gone after their grace",
    )
    events = sql(
        "SELECT id, kind, action, phase_to FROM deployment_events "
        "WHERE deployment = 'stubborn' AND generation = 2 ORDER BY id"
    )
    active = min(e["id"] for e in events if e["phase_to"] == "active")
    removed = [e["id"] for e in events if e["action"] == "remove"]
    assert len(removed) == 3 and max(removed) > active, "each stop ended after it was active"
    assert not [e for e in events if e["phase_to"] == "failed"]


def test_twenty_deletions_stop_side_by_side(
    daemon: Daemon, sql: Sql, containers: Containers
) -> None:
    names = [f"gone-{index}" for index in range(20)]
    for name in names:
        sql.insert(name, **STUBBORN)
    wait_for(lambda: all(sql.converged(n) for n in names), timeout_s=120, what="converged")
    sql("DELETE FROM deployments WHERE name LIKE 'gone-%%'")
    wait_for(lambda: not containers.find(), timeout_s=60, what="every container gone")
    wait_for(
        lambda: not sql("SELECT 1 FROM deployment_status WHERE name LIKE 'gone-%%'"),
        timeout_s=30,
        what="every status row dropped once its container was gone",
    )
    stops = sql(
        "SELECT started_at, finished_at FROM berth_mutations WHERE action = 'remove' "
        "AND deployment LIKE 'gone-%%' AND outcome = 'ok'"
    )
    assert len(stops) == 20
    at_once = max(
        sum(1 for o in stops if o["started_at"] <= s["started_at"] < o["finished_at"])
        for s in stops
    )
    # Each waits out its 4 s grace. Held by their passes, no more could run at once than
    # the daemon runs passes (BERTH_CONCURRENCY, 4 here); off the passes, nearly all do.
    assert at_once > daemon.settings.concurrency, f"at most {at_once} stops at once"


def test_a_leader_killed_while_replicas_stop_leaves_nothing_running_nor_unresolved(
    replicas: ReplicaSet, sql: Sql, containers: Containers
) -> None:
    first = replicas.start()
    replicas.start()
    replicas.wait_for_leader()
    names = [f"slow-{index}" for index in range(4)]
    for name in names:
        sql.insert(name, command=["sleep", "3600"], stop_grace_s=30)
    wait_for(lambda: all(sql.converged(n) for n in names), timeout_s=90, what="converged")
    leader = replicas.leader()
    assert leader is not None and leader.pid == first.pid
    term = replicas.term()
    sql("DELETE FROM deployments WHERE name LIKE 'slow-%%'")
    wait_for(
        lambda: (
            len(sql("SELECT 1 FROM berth_mutations WHERE action = 'remove' AND outcome IS NULL"))
            == len(names)
        ),
        timeout_s=30,
        what="every stop in flight (their 30 s grace)",
    )
    leader.process.kill()  # SIGKILL mid-stop: the intents stay open, the containers run on
    replicas.wait_for_leader(other_than_term=term, timeout_s=30)
    wait_for(lambda: not containers.find(), timeout_s=90, what="nothing left running")
    wait_for(
        lambda: (
            not sql("SELECT 1 FROM berth_mutations WHERE outcome IS NULL AND resolution IS NULL")
        ),
        timeout_s=30,
        what="every intent resolved",
    )
    wait_for(
        lambda: not sql("SELECT 1 FROM deployment_status WHERE name LIKE 'slow-%%'"),
        timeout_s=30,
        what="the rows dropped",
    )
