"""The daemon killed with SIGKILL mid-convergence and restarted creates no duplicates."""

from __future__ import annotations

import json
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest

from controller.gateways.processes import spawn_replica
from controller.policy.engine_faults import engine_faults
from tests.integration.conftest import EXAMPLE_IMAGE_2, Containers, Sql, settled, wait_for
from tests.integration.replicas import ReplicaSet

pytestmark = pytest.mark.integration


@contextmanager
def berth_run(database_url: str, cluster: str, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    process = spawn_replica(database_url, cluster, 0, log_path)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def test_sigkill_and_restart_creates_no_duplicates(
    sql: Sql, cluster: str, containers: Containers, tmp_path: Path
) -> None:
    log_path = tmp_path / "berth.log"
    names = [f"crash-{i}" for i in range(4)]
    with berth_run(sql.url, cluster, log_path) as first:
        sql(
            "INSERT INTO deployments (name, image, replicas) SELECT unnest(%s::text[]), "
            "'berth-example/busybox:1', 5",
            [names],
        )
        wait_for(
            lambda: len(containers.find()) >= 3, interval_s=0.01, what="some containers created"
        )
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    half_done = len(containers.find())
    assert half_done < 20, "the kill must land mid-convergence for this test to mean anything"
    with berth_run(sql.url, cluster, log_path):
        wait_for(lambda: all(sql.converged(n) for n in names), timeout_s=120, what="all converged")
    slots = Counter(
        (c["Labels"]["io.berth.deployment"], c["Labels"]["io.berth.replica"])
        for c in containers.find()
    )
    assert len(slots) == 20, f"expected 4 x 5 replicas, had {half_done} at the kill"
    assert set(slots.values()) == {1}, "no replica slot may hold two containers"
    assert all(c["State"] == "running" for c in containers.find())


def test_sigterm_stops_cleanly(sql: Sql, cluster: str, tmp_path: Path) -> None:
    log_path = tmp_path / "berth.log"
    with berth_run(sql.url, cluster, log_path) as process:
        wait_for(lambda: "berth started" in log_path.read_text(), what="daemon started")
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    assert "berth stopped" in log_path.read_text()


def test_a_known_engine_fault_is_warned_of_at_start(sql: Sql, cluster: str, tmp_path: Path) -> None:
    """The engine's version is read at start and each known fault of it logged, with what
    Berth's stop concurrency does about it; an engine without one, nothing."""
    version = docker.APIClient(version="auto").version(api_version=False)["Version"]
    expected = engine_faults(version, stop_concurrency=8)  # the default
    log_path = tmp_path / "berth.log"
    with berth_run(sql.url, cluster, log_path):
        wait_for(lambda: "berth started" in log_path.read_text(), what="daemon started")
    lines = log_path.read_text().splitlines()
    logged = [json.loads(line) for line in lines if "known engine fault" in line]
    assert [line["detail"] for line in logged] == list(expected), (version, logged)
    assert all(line["level"] == "warning" for line in logged)


@pytest.mark.parametrize("point", ["after:create", "before:starting", "after:remove"])
def test_sigkill_at_a_step_of_a_start_first_rollout(
    replicas: ReplicaSet, sql: Sql, containers: Containers, point: str
) -> None:
    """A daemon that SIGKILLs itself mid-rollout (old and new side by side): the next one
    ends with exactly one container per slot, all of the new revision, none of the old."""
    health = {"test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"],
              "interval_s": 0.5, "timeout_s": 2, "retries": 3}  # fmt: skip
    first = replicas.start()
    sql.insert("roll", replicas=2, healthcheck=health)
    wait_for(lambda: sql.converged("roll"), what="v1 converged")
    first.process.kill()
    first.process.wait(10)
    crashing = replicas.start(BERTH_CRASH_AT=point)
    sql("UPDATE deployments SET image = %s WHERE name = 'roll'", [EXAMPLE_IMAGE_2])
    wait_for(lambda: not crashing.alive(), timeout_s=60, what=f"killed itself at {point}")
    replicas.start()
    wait_for(
        lambda: (s := sql.converged("roll")) and s["generation"] == 2,
        timeout_s=120,
        what="converged after the crash",
    )
    found = settled(sql, containers, "roll", 2)
    assert sorted(c["Labels"]["io.berth.replica"] for c in found) == ["0", "1"], found
    assert {c["Image"] for c in found} == {EXAMPLE_IMAGE_2}
