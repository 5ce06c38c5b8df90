"""The multi-node rig (`controller.gateways.swarm_rig`): three engines in network
namespaces of their own, joined into one swarm, with the facts the swarm runtime builds on
checked here: every node ready, images loaded without a pull, a dnsrr service with
host-mode published ports spread over the three nodes and answering at each node's address,
and nothing left behind once the rig is closed."""

from __future__ import annotations

import urllib.request

import pytest

from controller.gateways.swarm_rig import SwarmRig
from tests.integration.conftest import EXAMPLE_IMAGE, wait_for

pytestmark = pytest.mark.integration


def test_a_three_node_swarm_serves_on_every_node_and_leaves_nothing() -> None:
    rig = SwarmRig(3, (EXAMPLE_IMAGE,))
    try:
        assert rig.ready_nodes() == 3
        manager = rig.manager().client()
        try:
            assert len([n for n in manager.nodes() if n["Spec"]["Role"] == "manager"]) == 3
            spec = {
                "ContainerSpec": {"Image": EXAMPLE_IMAGE},
                "Placement": {"MaxReplicas": 1},
            }
            manager.create_service(
                spec,
                name="web",
                mode={"Replicated": {"Replicas": 3}},
                endpoint_spec={
                    "Mode": "dnsrr",
                    "Ports": [{"TargetPort": 8080, "PublishedPort": 18080, "PublishMode": "host"}],
                },
            )

            def running_nodes() -> set[str] | None:
                tasks = manager.tasks(filters={"service": "web", "desired-state": "running"})
                nodes = {t["NodeID"] for t in tasks if t["Status"]["State"] == "running"}
                return nodes if len(nodes) == 3 else None

            wait_for(running_nodes, timeout_s=60, what="a task on each of the three nodes")
        finally:
            manager.close()
        for node in rig.nodes:  # one request each, to addresses this test made
            with urllib.request.urlopen(f"http://{node.address}:18080/", timeout=5) as answer:
                assert b"hello from berth" in answer.read()
    finally:
        rig.close()
    assert rig.leftovers() == []
