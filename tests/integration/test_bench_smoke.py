"""Benchmarks must not rot: every scenario runs once at tiny sizes (figures unchecked), in
two runs that each stay within a test's time limit."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def smoke(*scenarios: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "controller.app.cli", "bench", "run", "--smoke", *scenarios],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_the_single_engine_scenarios_run_in_smoke_mode() -> None:
    out = smoke(
        "planner", "latency", "cold", "update", "steady", "build", "rollout", "api", "fullread"
    )
    headings = ("== planner", "== latency", "== cold converge", "== update", "== steady state")
    builds = ("== build: source -> running", "== build: 3 builds queued")
    rollouts = ("== rollout: 2 image updates", "== rollout: 2 deployments x 3 replicas")
    api = ("== api: GET /api/v1/deployments", "== api: SQL commit -> SSE", "== api: cold converge")
    reads = ("== full read: 20 deployments", "full read + parse, p50 (ms)")
    for heading in (*headings, *builds, *rollouts, *api, *reads):
        assert heading in out, heading
    assert "Swarm" in out
    assert "full resync wall time" in out


def test_the_swarm_failover_stops_and_clients_scenarios_run_in_smoke_mode() -> None:
    out = smoke("swarm", "swarm-source", "db-failover", "stops", "clients")
    assert "== db-failover: 3 deployments, a standby promoted" in out
    assert "primary lost -> the leader's first mutation" in out
    assert "== swarm: 2 deployments x 3 replicas on 3 nodes" in out
    assert "== swarm: source -> 3 replicas on 3 nodes, through a registry" in out
    assert "== swarm: 1 rollouts across 3 nodes under load" in out
    assert "node lost -> all running elsewhere" in out
    assert "== stops: replicas ignoring SIGTERM" in out
    assert "== clients: real load tools through the proxy" in out
    assert "hey, 8 workers, no keep-alive, while changing" in out
