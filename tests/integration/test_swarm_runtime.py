"""The swarm runtime (`BERTH_RUNTIME=swarm`) on the three-node rig: deployments converge
with their replicas spread over the nodes and answering at each node's address, an update
rolls out start-first (new services up before the old ones go), and a delete leaves no
service. The rig is made once for the module."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest

from controller.app.daemon import Daemon
from controller.gateways.swarm_rig import SwarmRig
from controller.model.replicas import RunState
from tests.integration.conftest import EXAMPLE_IMAGE, EXAMPLE_IMAGE_2, Sql, settings_for, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def rig() -> Iterator[SwarmRig]:
    made = SwarmRig(3, (EXAMPLE_IMAGE, EXAMPLE_IMAGE_2))
    yield made
    made.close()
    assert made.leftovers() == []


@pytest.fixture
def swarm_daemon(
    rig: SwarmRig, cluster: str, database_url: str, sql: Sql, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Daemon]:
    monkeypatch.setenv("DOCKER_HOST", rig.manager().url)
    daemon = Daemon(settings_for(cluster, database_url, runtime="swarm"), database_url)
    daemon.start()
    yield daemon
    daemon.stop()


def test_deployments_spread_over_the_nodes_roll_out_and_go(
    swarm_daemon: Daemon, sql: Sql, rig: SwarmRig, cluster: str
) -> None:
    names = [f"web-{index}" for index in range(3)]
    for name in names:
        sql.insert(name, replicas=3, ports=[{"container": 8080}])
    wait_for(lambda: all(sql.converged(n) for n in names), timeout_s=120, what="converged")
    replicas = [r for r in swarm_daemon.runtime.observe() if r.cluster == cluster]
    assert len(replicas) == 9 and all(r.state == RunState.RUNNING for r in replicas)
    nodes = {r.node.rpartition("@")[2] for r in replicas}
    assert nodes == {n.address for n in rig.nodes}, "tasks on all three nodes"
    addresses = {node.address for node in rig.nodes}
    for replica in replicas:  # nine requests, each to a node this test made
        host, port = replica.address(8080) or ("", 0)
        assert host in addresses
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=5) as answer:
            assert b"hello from berth" in answer.read()

    before = {r.id for r in replicas if r.deployment == "web-0"}
    sql("UPDATE deployments SET image = %s WHERE name = 'web-0'", [EXAMPLE_IMAGE_2])
    wait_for(
        lambda: (found := sql.converged("web-0")) and found["observed_generation"] == 2,
        timeout_s=120,
        what="the update rolled out",
    )
    after = [r for r in swarm_daemon.runtime.observe("web-0") if r.cluster == cluster]
    assert len(after) == 3 and not before & {r.id for r in after}
    actions = sql(
        "SELECT action FROM deployment_events WHERE deployment = 'web-0' AND generation = 2 "
        "AND kind = 'action' ORDER BY id"
    )
    kinds = [row["action"] for row in actions]
    assert kinds.index("create") < kinds.index("remove"), "start-first: created before removed"

    for name in names:
        sql("DELETE FROM deployments WHERE name = %s", [name])
    wait_for(
        lambda: not [r for r in swarm_daemon.runtime.observe() if r.cluster == cluster],
        timeout_s=60,
        what="every service gone",
    )
