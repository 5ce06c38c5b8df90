"""Benchmarks must not rot: every scenario runs once at tiny sizes (figures unchecked)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_every_benchmark_scenario_runs_in_smoke_mode() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "controller.app.cli",
            "bench",
            "run",
            "--smoke",
            "planner",
            "latency",
            "cold",
            "update",
            "steady",
            "build",
            "rollout",
            "api",
            "fullread",
            "swarm",
            "stops",
            "clients",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    headings = ("== planner", "== latency", "== cold converge", "== update", "== steady state")
    builds = ("== build: source -> running", "== build: 3 builds queued")
    rollouts = ("== rollout: 2 image updates", "== rollout: 2 deployments x 3 replicas")
    api = ("== api: GET /api/v1/deployments", "== api: SQL commit -> SSE", "== api: cold converge")
    reads = ("== full read: 20 deployments", "full read + parse, p50 (ms)")
    for heading in (*headings, *builds, *rollouts, *api, *reads):
        assert heading in result.stdout, heading
    assert "Swarm" in result.stdout
    assert "full resync wall time" in result.stdout
    assert "== swarm: 2 deployments x 3 replicas on 3 nodes" in result.stdout
    assert "node lost -> all running elsewhere" in result.stdout
    assert "== stops: replicas ignoring SIGTERM" in result.stdout
    assert "== clients: real load tools through the proxy" in result.stdout
    assert "hey, 8 workers, no keep-alive, while changing" in result.stdout
