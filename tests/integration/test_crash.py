"""The daemon killed with SIGKILL mid-convergence and restarted creates no duplicates."""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from controller.gateways.processes import spawn_replica
from tests.integration.conftest import Containers, Sql, wait_for

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
