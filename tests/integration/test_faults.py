"""Faults of the world around Berth, with the real thing: a private Docker engine restarted,
a private Postgres restarted while probes are asked, a leader frozen with SIGSTOP.

Timings are printed ([measured]) and reported by `berth bench run chaos`; what is asserted
is the behaviour: nothing left failed, no crash counted, a follower takes over while the
leader is still frozen, probes answer with the reason while Postgres is down.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.app.daemon import Daemon
from controller.gateways.engines import PrivateEngine
from tests.integration.conftest import EXAMPLE_IMAGE, Sql, report, settings_for, wait_for
from tests.integration.replicas import ReplicaSet

pytestmark = pytest.mark.integration


@pytest.fixture
def engine() -> Iterator[PrivateEngine]:
    private = PrivateEngine((EXAMPLE_IMAGE,))
    yield private
    private.close()


def test_an_engine_restart_leaves_nothing_failed_and_counts_no_crash(
    engine: PrivateEngine,
    cluster: str,
    database_url: str,
    sql: Sql,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    daemon = Daemon(settings_for(cluster, database_url), database_url)
    daemon.start()
    try:
        names = [f"svc-{i}" for i in range(6)]
        for index, name in enumerate(names):
            sql.insert(name, replicas=1 + index % 2)
        wait_for(lambda: all(sql.converged(n) for n in names), what="converged before")

        engine_lost_at = time.time()
        engine.stop()
        # While it is down, work arrives and passes fail.
        sql("UPDATE deployments SET replicas = 2 WHERE name = 'svc-0'")
        wait_for(
            lambda: sql("SELECT 1 FROM deployment_status WHERE failure_kind IS NOT NULL"),
            what="a pass failing while the engine is down",
        )
        answered_at = engine.start()
        wait_for(lambda: all(sql.converged(n) for n in names), timeout_s=60, what="reconverged")
        report(capsys, f"engine answering -> all converged: {time.time() - answered_at:.2f}s")

        rows = sql("SELECT name, phase, restart_count FROM deployment_status ORDER BY name")
        assert [r["phase"] for r in rows] == ["active"] * len(names)
        restarts = sql(
            "SELECT deployment, at, message FROM deployment_events"
            " WHERE kind = 'error' OR action IN ('start', 'restart') ORDER BY id"
        )
        assert [r["restart_count"] for r in rows] == [0] * len(names), (
            f"no crash counted; lost at {engine_lost_at:.3f}, answered at {answered_at:.3f}: "
            + "\n".join(
                f"{r['at'].timestamp():.3f} {r['deployment']}: {r['message']}" for r in restarts
            )
        )
        client = engine.client()
        running = client.containers(filters={"label": [f"io.berth.cluster={cluster}"]})
        assert len(running) == 10
        client.close()
        notes = sql(
            "SELECT count(*) AS n FROM deployment_events WHERE action = 'start'"
            " AND message LIKE %s",
            ["%stopped by a Docker engine restart%"],
        )
        assert notes[0]["n"] >= 9, "the replicas the engine stopped were started as such"
    finally:
        daemon.stop()


def _get(url: str) -> tuple[int, str, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
            return response.status, body, time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), time.monotonic() - started


def test_probes_answer_with_the_reason_and_a_leader_returns_while_postgres_restarts(
    tmp_path: Path,
    cluster: str,
    capsys: pytest.CaptureFixture[str],
    private_postgres: tuple[Any, Sql],
) -> None:
    server, sql = private_postgres
    replica_set = ReplicaSet(sql, cluster, tmp_path)
    try:
        replica = replica_set.start()
        replica_set.wait_for_leader()
        term = replica_set.term()
        base = f"http://127.0.0.1:{replica.port}"
        assert _get(f"{base}/readyz")[:2] == (200, "ok\n")

        server.stop()
        answers = [(_get(f"{base}/readyz"), _get(f"{base}/status")) for _ in range(5)]
        for (ready_code, reason, _), (status_code, status_body, _) in answers:
            assert ready_code == 503 and reason.startswith("postgres:"), reason
            assert status_code == 200
            status = json.loads(status_body)
            assert status["snapshot_age_s"] is not None and status["node"]["id"]
        slowest = max(max(r[2], s[2]) for r, s in answers)
        report(capsys, f"probes during a Postgres outage: slowest answer {slowest:.3f}s")

        server.start()
        back_at = time.monotonic()
        replica_set.wait_for_leader(other_than_term=term, timeout_s=30)
        report(capsys, f"Postgres accepting -> leader again: {time.monotonic() - back_at:.2f}s")
        wait_for(lambda: _get(f"{base}/readyz")[0] == 200, timeout_s=10, what="ready again")
    finally:
        replica_set.stop_all()


def test_a_frozen_leader_is_replaced_while_it_is_frozen(
    replicas: ReplicaSet, sql: Sql, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(2):
        replicas.start()
    old = replicas.wait_for_leader()
    old_term = replicas.term()
    names = [f"frozen-{i}" for i in range(4)]
    for name in names:
        sql.insert(name, replicas=2)
    wait_for(
        lambda: any(m["term"] == old_term for m in replicas.mutations()),
        interval_s=0.01,
        what="the leader mutating",
    )
    old.process.send_signal(signal.SIGSTOP)
    frozen_at = time.time()
    try:
        replicas.wait_for_leader(other_than_term=old_term, timeout_s=30)
        wait_for(lambda: all(sql.converged(n) for n in names), timeout_s=60, what="converged")
        assert old.process.poll() is None
        new_calls = [
            m["called_at"].timestamp()
            for m in replicas.mutations()
            if m["term"] > old_term and m["called_at"] is not None
        ]
        assert new_calls, "the new leader acted while the old one was still frozen"
        report(capsys, f"freeze -> new leader's first call: {min(new_calls) - frozen_at:.2f}s")
    finally:
        old.process.send_signal(signal.SIGCONT)
    wait_for(lambda: (s := old.status()) and s["node"]["role"] == "standby", what="standby")
    late = [
        m
        for m in replicas.mutations()
        if m["term"] == old_term and m["called_at"] and m["called_at"].timestamp() > frozen_at
    ]
    assert late == [], f"the thawed leader made a call: {late}"
