"""Restarts of exited and unhealthy replicas, with backoff, diagnosis and recovery."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from controller.app.daemon import Daemon
from tests.integration.conftest import Containers, Sql, wait_for

pytestmark = pytest.mark.integration

FAST_BACKOFF = {
    "restart_backoff_initial_s": 1.0,
    "restart_backoff_max_s": 4.0,
    "restart_backoff_reset_s": 600.0,
    "recreate_after_restarts": 100,
}


def events(sql: Sql, name: str) -> list[dict[str, Any]]:
    return sql("SELECT * FROM deployment_events WHERE deployment = %s ORDER BY id", [name])


def test_a_crashing_replica_backs_off_and_shows_why(
    start_daemon: Callable[..., Daemon], sql: Sql, containers: Containers
) -> None:
    start_daemon(**FAST_BACKOFF)
    sql.insert("crasher", command=["sh", "-c", "echo database unreachable >&2; exit 3"])
    status = wait_for(
        lambda: (
            (s := sql.status("crasher"))
            and s["phase"] == "degraded"
            and s["restart_count"] >= 3
            and s
        ),
        what="crash-looping with backoff",
    )
    assert "crash-looping" in status["message"]
    assert "exited with code 3" in status["message"]
    assert "database unreachable" in status["message"], "the log tail explains the crash"
    row = sql("SELECT replica_restarts FROM deployment_status WHERE name = 'crasher'")[0]
    replica = row["replica_restarts"]["0"]
    assert replica["last_exit_code"] == 3 and replica["last_reason"] == "exited"
    restarts = [e for e in events(sql, "crasher") if e["metadata"].get("reason") == "exited"]
    assert restarts and "database unreachable" in restarts[-1]["metadata"]["log_tail"]
    # Backoff: restarts are spaced by at least 1 s, then 2 s, then 4 s.
    times = [e["at"] for e in restarts]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    expected = [1.0, 2.0, 4.0, 4.0, 4.0, 4.0][: len(gaps)]
    assert all(gap >= want - 0.1 for gap, want in zip(gaps, expected, strict=True)), gaps
    assert len(containers.find("crasher")) == 1, "restarts reuse the replica's one container"


def test_an_unhealthy_replica_is_restarted(
    start_daemon: Callable[..., Daemon], sql: Sql, containers: Containers
) -> None:
    start_daemon(**FAST_BACKOFF)
    sql.insert(
        "sick",
        healthcheck={
            "test": ["CMD-SHELL", "echo dependency down; exit 1"],
            "interval_s": 0.5,
            "timeout_s": 2,
            "retries": 1,
        },
    )
    status = wait_for(
        lambda: (s := sql.status("sick")) and s["restart_count"] >= 2 and s, what="restarted twice"
    )
    restarts = [e for e in events(sql, "sick") if e["metadata"].get("reason") == "unhealthy"]
    assert restarts, status
    assert "dependency down" in restarts[-1]["metadata"]["health_output"]
    assert any(e["action"] == "restart" for e in events(sql, "sick"))
    assert len(containers.find("sick")) == 1


def test_a_replica_that_recovers_after_a_restart_becomes_active(
    start_daemon: Callable[..., Daemon], sql: Sql
) -> None:
    start_daemon(**FAST_BACKOFF)
    # Fails on its first run only: a restart keeps the container's filesystem.
    script = "test -f /tmp/warm || { touch /tmp/warm; exit 1; }; exec /bin/serve"
    sql.insert("flaky", command=["sh", "-c", script])
    status = wait_for(
        lambda: (s := sql.converged("flaky")) and s["restart_count"] == 1 and s,
        what="active after one restart",
    )
    assert status["phase"] == "active"


def test_restarts_turn_into_recreation_when_they_do_not_help(
    start_daemon: Callable[..., Daemon], sql: Sql, containers: Containers
) -> None:
    start_daemon(**{**FAST_BACKOFF, "recreate_after_restarts": 1})
    sql.insert("hopeless", command=["sh", "-c", "exit 1"])
    first = wait_for(lambda: containers.find("hopeless"), what="first container")[0]["Id"]
    wait_for(
        lambda: any(e["metadata"].get("reason") == "crash_loop" for e in events(sql, "hopeless")),
        what="a recreation",
    )
    wait_for(
        lambda: (c := containers.find("hopeless")) and c[0]["Id"] != first, what="new container"
    )
    # The recreation replaced the container: one of them, never two (zero only for the
    # instant between a removal and its create, so wait for exactly one).
    found = wait_for(
        lambda: (c := containers.find("hopeless")) and len(c) == 1 and c, what="one container"
    )
    assert found[0]["Id"] != first


def test_a_new_generation_starts_the_restart_count_over(
    start_daemon: Callable[..., Daemon], sql: Sql
) -> None:
    start_daemon(**FAST_BACKOFF)
    sql.insert("fixable", command=["sh", "-c", "exit 1"])
    wait_for(lambda: (s := sql.status("fixable")) and s["restart_count"] >= 2, what="crash-looping")
    sql("UPDATE deployments SET command = NULL WHERE name = 'fixable'")
    status = wait_for(lambda: sql.converged("fixable"), what="fixed")
    assert status["restart_count"] == 0
