"""The swarm runtime's reading of services and tasks, and the services it asks for (no
swarm needed): controller.gateways.swarm_runtime."""

from __future__ import annotations

from typing import Any

import pytest

from controller.gateways.swarm_runtime import (
    SwarmNode,
    current_task,
    replica_from_service,
    replica_state,
    service_spec,
)
from controller.model.errors import InvalidSpec
from controller.model.replicas import Mount, ReplicaRequest, RunState


def task(state: str, index: int, desired: str = "running", **status: Any) -> dict[str, Any]:
    return {
        "ID": f"t{index}",
        "NodeID": "n1",
        "DesiredState": desired,
        "Version": {"Index": index},
        "Status": {"State": state, **status},
    }


@pytest.mark.parametrize(
    ("tasks", "state"),
    [
        ([task("running", 3)], RunState.RUNNING),
        ([task("preparing", 3)], RunState.RESTARTING),
        ([task("failed", 2, "shutdown"), task("pending", 5)], RunState.RESTARTING),
        ([task("running", 2, "shutdown"), task("starting", 4)], RunState.RESTARTING),
        ([task("complete", 2, "shutdown")], RunState.EXITED),
        ([], RunState.RESTARTING),
    ],
)
def test_a_replicas_state_is_its_current_tasks(
    tasks: list[dict[str, Any]], state: RunState
) -> None:
    assert replica_state(current_task(tasks)) == state


def test_a_service_is_a_replica_on_its_node_at_the_nodes_address() -> None:
    service = {
        "ID": "s1",
        "CreatedAt": "2026-12-06T02:00:00.123456789Z",
        "Spec": {
            "Name": "berth-web-2-abcd1234",
            "Labels": {
                "io.berth.deployment": "web",
                "io.berth.replica": "2",
                "io.berth.spec-hash": "h",
                "io.berth.cluster": "blue",
            },
        },
    }
    ports = {"Ports": [{"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": 30001}] * 2}
    tasks = [task("failed", 1, "shutdown"), task("running", 4, PortStatus=ports)]
    node = SwarmNode("node-1", "10.232.1.2", ready=True)
    replica = replica_from_service(service, tasks, {"n1": node})
    assert (replica.deployment, replica.replica, replica.spec_hash, replica.cluster) == (
        "web",
        2,
        "h",
        "blue",
    )
    assert replica.state == RunState.RUNNING and replica.ready
    assert replica.node == "node-1" and replica.restarts == 1
    assert replica.created == 1796522400, "when the service was made: Berth's record decides"
    assert replica.address(8080) == ("10.232.1.2", 30001) and len(replica.endpoints) == 1
    lost = replica_from_service(service, tasks, {"n1": SwarmNode("node-1", "10.232.1.2", False)})
    assert lost.state == RunState.RESTARTING and not lost.ready
    assert lost.node == "node-1 (lost)", "a task on a node Swarm no longer hears from"


def test_what_the_swarm_runtime_cannot_give_yet_is_refused_naming_the_field() -> None:
    base = ReplicaRequest("berth-web-0-x", "img", ("sleep", "9"), {"A": "b"}, {"k": "v"})
    arguments = service_spec(base)
    assert arguments["task_template"]["ContainerSpec"]["Args"] == ["sleep", "9"]
    assert arguments["endpoint_spec"]["Mode"] == "dnsrr"
    assert arguments["mode"] == {"Replicated": {"Replicas": 1}}
    with_volume = ReplicaRequest(
        "n", "img", None, mounts=(Mount("volume", "berth-web-data", "/data", False),)
    )
    with pytest.raises(InvalidSpec, match="volumes: not supported by the swarm runtime"):
        service_spec(with_volume)
