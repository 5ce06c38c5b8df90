"""One data plane per cluster (issue 23's two splits), with real `berth run` processes:

- two Berth databases under one cluster name on one Docker engine: the second touches
  nothing and says why (`berth status`, `/readyz`, `/status`, a metric);
- two replicas of one cluster on two engines: the one whose engine is not the cluster's
  never leads, not even once the other is dead, and puts nothing on its engine.
"""

from __future__ import annotations

import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.gateways.engines import PrivateEngine
from controller.gateways.postgres import Database
from tests.integration.conftest import (
    EXAMPLE_IMAGE,
    Containers,
    Sql,
    berth,
    fresh_database,
    wait_for,
)
from tests.integration.replicas import Replica, ReplicaSet

pytestmark = pytest.mark.integration


def _get(replica: Replica, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{replica.port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _refused_metric(replica: Replica, reason: str) -> bool:
    _, text = _get(replica, "/metrics")
    return f'berth_data_plane_refused{{reason="{reason}"}} 1.0' in text


def _seen_twice_more(sql: Sql, replica: Replica) -> None:
    """Wait (polling) until the replica reported itself twice more: two more times its
    leadership loop asked whether it may lead."""
    query = "SELECT seen_at FROM berth_nodes WHERE pid = %s"
    first = wait_for(lambda: sql(query, [replica.pid]), what="its first report")[0]["seen_at"]
    second = wait_for(
        lambda: [r["seen_at"] for r in sql(query, [replica.pid]) if r["seen_at"] > first],
        what="a report",
    )[0]
    wait_for(lambda: sql(query, [replica.pid])[0]["seen_at"] > second, what="another report")


@pytest.fixture
def second_database(postgres_server_url: str) -> Iterator[Sql]:
    """Another Berth database on the same server: another installation."""
    with fresh_database(postgres_server_url, "other") as url:
        database = Database(url, pool_size=1)
        database.schema.migrate()
        database.close()
        yield Sql(url)


def test_a_second_database_under_the_same_cluster_name_touches_nothing(
    sql: Sql,
    cluster: str,
    replicas: ReplicaSet,
    second_database: Sql,
    containers: Containers,
    tmp_path: Path,
) -> None:
    first = replicas.start()
    replicas.wait_for_leader()
    sql.insert("web", replicas=2)
    wait_for(lambda: sql.converged("web"), what="web converged by the first database")
    before = sorted(c["Id"] for c in containers.find())

    # A quickstart left running beside it: another database, the same (cluster) name.
    second_database.insert("api")
    others = ReplicaSet(second_database, cluster, tmp_path)
    try:
        second = others.start()
        wait_for(lambda: _refused_metric(second, "other_database"), what="the refusal")
        status, reason = _get(second, "/readyz")
        assert status == 503 and "another Berth database" in reason
        _, body = _get(second, "/status")
        assert "managed by another Berth database" in body
        _seen_twice_more(second_database, second)
        rows = second_database("SELECT role, note FROM berth_nodes")
        assert [r["role"] for r in rows] == ["refused"]
        assert "another BERTH_CLUSTER" in rows[0]["note"]
        shown = berth(second_database.url, "status", cluster=cluster)
        assert "refused" in shown.stdout and "managed by another Berth database" in shown.stdout
        # It never led, so it neither removed the first one's containers as orphans nor
        # made its own deployment's.
        assert second_database("SELECT count(*) AS n FROM berth_leader")[0]["n"] == 0
        assert sorted(c["Id"] for c in containers.find()) == before
        assert containers.find("api") == []
        assert first.alive() and sql.converged("web")
        assert _refused_metric(first, "other_database") is False
    finally:
        others.stop_all()


@pytest.fixture
def engine() -> Iterator[PrivateEngine]:
    private = PrivateEngine((EXAMPLE_IMAGE,))
    yield private
    private.close()


def test_a_replica_on_another_engine_never_leads_even_alone(
    sql: Sql, cluster: str, replicas: ReplicaSet, engine: PrivateEngine, containers: Containers
) -> None:
    first = replicas.start()
    replicas.wait_for_leader()
    sql.insert("web", replicas=2)
    wait_for(lambda: sql.converged("web"), what="web converged on the cluster's engine")

    elsewhere = replicas.start(DOCKER_HOST=engine.url)
    wait_for(lambda: _refused_metric(elsewhere, "other_engine"), what="the refusal")
    status, reason = _get(elsewhere, "/readyz")
    assert status == 503 and f"cluster {cluster!r} runs on Docker engine" in reason
    term = replicas.term()

    first.process.send_signal(signal.SIGKILL)  # the cluster's host is lost
    first.process.wait(10)
    _seen_twice_more(sql, elsewhere)
    assert replicas.term() == term, "the replica on another engine claimed no term"
    assert elsewhere.alive() and _refused_metric(elsewhere, "other_engine")
    client = engine.client()
    try:
        on_its_engine = client.containers(
            all=True, filters={"label": [f"io.berth.cluster={cluster}"]}
        )
    finally:
        client.close()
    assert on_its_engine == [], "nothing started on the refusing replica's engine"
    assert len(containers.running("web")) == 2, "the cluster's engine keeps its containers"
