"""The swarm runtime's reading of services and tasks, and the services it asks for (no
swarm needed): controller.gateways.swarm_runtime."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any, cast

import docker
import pytest
import requests

from controller.gateways.docker_engine import DockerGateway
from controller.gateways.swarm_runtime import SwarmRuntime
from controller.gateways.swarm_spec import service_spec
from controller.gateways.swarm_tasks import (
    current_task,
    inspected_task,
    node_from_swarm,
    replica_from_service,
    replica_state,
)
from controller.model.errors import InvalidSpec, ReplicaVanished
from controller.model.nodes import Availability, NodeState, ObservedNode
from controller.model.replicas import Mount, ReplicaRequest, RunState


def swarm_node(node_id: str, address: str, state: str = "ready", **labels: str) -> ObservedNode:
    return node_from_swarm(
        {
            "ID": node_id,
            "Description": {"Hostname": "node-" + node_id[1:]},
            "Status": {"State": state, "Addr": address},
            "Spec": {"Role": "manager", "Availability": "active", "Labels": labels},
        }
    )


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
        # Swarm runs an ended task again (restart policy `any`): Berth must not start it
        ([task("complete", 2, "shutdown")], RunState.RESTARTING),
        ([task("rejected", 2, "shutdown", Err="No such image: x:1")], RunState.RESTARTING),
        ([], RunState.RESTARTING),
    ],
)
def test_a_replicas_state_is_its_current_tasks(
    tasks: list[dict[str, Any]], state: RunState
) -> None:
    assert replica_state(current_task(tasks)) == state


@pytest.mark.parametrize(
    ("tasks", "reported"),
    [
        ([task("running", 3)], "t3"),
        ([task("preparing", 3)], "t3"),  # nothing ended yet: the task coming up
        # the app's exit, while Swarm holds its replacement for the restart delay
        ([task("failed", 2, "shutdown", ContainerStatus={"ExitCode": 3}), task("ready", 5)], "t2"),
        ([task("complete", 2, "shutdown"), task("starting", 4)], "t2"),
        # stopped by Swarm (an update), not the app's end: the task coming up
        ([task("shutdown", 2, "shutdown"), task("starting", 4)], "t4"),
        # the replacement runs: it is the news, not the earlier exit
        ([task("failed", 2, "shutdown"), task("running", 5)], "t5"),
        ([task("failed", 2, "shutdown")], "t2"),
        ([], None),
    ],
)
def test_an_inspection_reports_the_last_exit_while_swarm_restarts(
    tasks: list[dict[str, Any]], reported: str | None
) -> None:
    found = inspected_task(tasks)
    assert (found["ID"] if found else None) == reported


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
    node = swarm_node("n1", "10.232.1.2")
    replica = replica_from_service(service, tasks, {"n1": node})
    assert (replica.deployment, replica.replica, replica.spec_hash, replica.cluster) == (
        "web",
        2,
        "h",
        "blue",
    )
    assert replica.state == RunState.RUNNING and replica.ready
    assert replica.node == "node-1@10.232.1.2" and replica.restarts == 1
    assert replica.created == 1796522400, "when the service was made: Berth's record decides"
    assert replica.address(8080) == ("10.232.1.2", 30001) and len(replica.endpoints) == 1
    lost = replica_from_service(service, tasks, {"n1": swarm_node("n1", "10.232.1.2", "down")})
    assert lost.state == RunState.RESTARTING and not lost.ready
    assert lost.node == "node-1@10.232.1.2 (lost)", "a task on a node Swarm no longer hears from"


def test_a_replica_as_a_service_and_what_swarm_cannot_give_refused_naming_the_field() -> None:
    base = ReplicaRequest("berth-web-0-x", "img", ("sleep", "9"), {"A": "b"}, {"k": "v"})
    arguments = service_spec(base)
    assert arguments["task_template"]["ContainerSpec"]["Args"] == ["sleep", "9"]
    assert arguments["endpoint_spec"]["Mode"] == "dnsrr"
    assert arguments["mode"] == {"Replicated": {"Replicas": 1}}
    labels = {"io.berth.cluster": "blue", "io.berth.deployment": "web"}
    with_volume = ReplicaRequest(
        "n",
        "img",
        None,
        labels=labels,
        mounts=(Mount("volume", "berth-blue-web-data", "/data", False, "data"),),
        networks=("berth-blue-net-back",),
        aliases=("web",),
    )
    template = service_spec(with_volume)["task_template"]
    (mount,) = template["ContainerSpec"]["Mounts"]
    assert (mount["Type"], mount["Source"], mount["Target"]) == (
        "volume",
        "berth-blue-web-data",
        "/data",
    )
    assert mount["VolumeOptions"]["Labels"] == {**labels, "io.berth.volume": "data"}
    assert template["Networks"] == [{"Target": "berth-blue-net-back", "Aliases": ["web"]}]
    shared = replace(with_volume, deployment_replicas=2)
    with pytest.raises(InvalidSpec, match=r"volumes\[0\]: named volume 'data' lives on one node"):
        service_spec(shared)
    shared_by_a_driver = replace(
        shared, mounts=(Mount("volume", "berth-blue-web-data", "/data", False, "data", "nfs"),)
    )
    (mount,) = service_spec(shared_by_a_driver)["task_template"]["ContainerSpec"]["Mounts"]
    assert mount["VolumeOptions"]["DriverConfig"] == {"Name": "nfs"}, "its driver shares it"
    with pytest.raises(InvalidSpec, match="privileged: not supported by the swarm runtime"):
        service_spec(replace(base, privileged=True))


def on(node_id: str, item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "NodeID": node_id}


def test_a_task_run_again_because_its_node_was_lost_is_no_restart_and_names_the_node() -> None:
    service = {"ID": "s1", "Spec": {"Name": "berth-web-0-h", "Labels": {"io.berth.replica": "0"}}}
    nodes = {"n1": swarm_node("n1", "10.0.0.1"), "n2": swarm_node("n2", "10.0.0.2", "down")}
    moved = [on("n2", task("running", 2, "shutdown")), on("n1", task("running", 5))]
    replica = replica_from_service(service, moved, nodes)
    assert replica.ready and replica.node == "node-1@10.0.0.1"
    assert replica.moved_from == "node-2@10.0.0.2" and replica.restarts == 0
    crashed = [on("n1", task("failed", 2, "shutdown")), on("n1", task("running", 5))]
    assert replica_from_service(service, crashed, nodes).restarts == 1, "the app's own crash"
    assert replica_from_service(service, crashed, nodes).moved_from == ""


def test_swarms_own_words_are_the_replicas_note_and_a_placement_names_the_field() -> None:
    placed = {
        "ID": "s1",
        "Spec": {
            "Name": "berth-web-0-h",
            "Labels": {"io.berth.replica": "0"},
            "TaskTemplate": {"Placement": {"Constraints": ["node.labels.zone==z"]}},
        },
    }
    err = "no suitable node (scheduling constraints not satisfied on 3 nodes)"
    pending = [{**task("pending", 2, Err=err), "NodeID": ""}]
    replica = replica_from_service(placed, pending, {})
    assert replica.node == "unscheduled" and replica.state == RunState.RESTARTING
    assert replica.note == f"placement [node.labels.zone==z]: {err}"
    missing = [task("rejected", 3, Err="No such image: nowhere:1")]
    no_image = replica_from_service(placed, missing, {"n1": swarm_node("n1", "10.0.0.1")})
    assert no_image.note == "No such image: nowhere:1"
    # Swarm tries again at once: while the retry comes up, the note still says why the last
    # try ended, not the retry's own progress.
    retrying = [
        task("rejected", 3, "shutdown", Err="No such image: nowhere:1"),
        task("assigned", 5, Message="scheduler assigned task to node"),
    ]
    again = replica_from_service(placed, retrying, {"n1": swarm_node("n1", "10.0.0.1")})
    assert again.note == (
        "No such image: nowhere:1 (last try rejected; Swarm trying again: assigned)"
    )
    first = [task("assigned", 5, Message="scheduler assigned task to node")]
    assert replica_from_service(placed, first, {}).note == (
        "assigned: scheduler assigned task to node"
    ), "a first try has no earlier end to tell"


def test_during_a_start_first_move_the_old_task_serves_until_the_new_one_runs() -> None:
    old, new = on("n2", task("running", 3)), on("n1", task("pending", 6, Err="no suitable node"))
    assert current_task([old, new]) is old
    service = {"ID": "s1", "Spec": {"Name": "berth-web-0-h", "Labels": {"io.berth.replica": "0"}}}
    nodes = {"n1": swarm_node("n1", "10.0.0.1"), "n2": swarm_node("n2", "10.0.0.2")}
    serving = replica_from_service(service, [old, new], nodes)
    assert serving.ready and serving.node == "node-2@10.0.0.2"
    assert serving.note == "moving: no suitable node", "why the move waits"
    assert (current_task([old, on("n1", task("running", 7))]) or {}).get("ID") == "t7"


def test_a_nodes_availability_state_and_labels_are_read_in_berths_words() -> None:
    node = swarm_node("n3", "10.0.0.3", "down", zone="b")
    assert (node.name, node.state, node.availability) == (
        "node-3@10.0.0.3",
        NodeState.DOWN,
        Availability.ACTIVE,
    )
    assert node.labels == {"zone": "b"} and not node.takes_replicas


class RacingApi:
    """A manager whose first ask for tasks comes after one of the listed services went."""

    def __init__(self, races: int) -> None:
        self.races = races
        self.services_listed = 0

    def services(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        self.services_listed += 1
        return [{"ID": "s1", "Spec": {"Name": "berth-web-0-h", "Labels": {}}}]

    def tasks(self, filters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        if self.races:
            self.races -= 1
            response = requests.Response()
            response.status_code = 404
            raise docker.errors.NotFound("gone", response, "service s0 not found")
        return [{**task("running", 3), "ServiceID": "s1"}]

    def nodes(self) -> list[dict[str, Any]]:
        return []


def test_a_service_removed_during_a_look_is_looked_at_again() -> None:
    api = RacingApi(races=1)
    runtime = SwarmRuntime(cast(DockerGateway, SimpleNamespace(api=api)))
    assert [r.id for r in runtime.observe("web")] == ["s1"] and api.services_listed == 2
    stuck = SwarmRuntime(cast(DockerGateway, SimpleNamespace(api=RacingApi(races=9))))
    with pytest.raises(ReplicaVanished):
        stuck.observe("web")
