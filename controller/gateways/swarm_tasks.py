"""Reading a swarm: Swarm's services, tasks and nodes as Berth's replicas and nodes.

Pure functions over the dictionaries the Docker API returns; called by the swarm runtime
(`controller.gateways.swarm_runtime`) and held to real Swarm answers by
`tests/unit/test_swarm_parsing.py`. Observed state comes from tasks, never from Swarm's
update status: a replica is running only when a task of it runs, on a node Swarm hears
from, at that node's address and the port Swarm published there.
"""

from __future__ import annotations

from typing import Any

from controller.gateways.docker_engine import docker_time
from controller.model.names import (
    DEFAULT_CLUSTER,
    LABEL_CLUSTER,
    LABEL_DEPLOYMENT,
    LABEL_PROOF,
    LABEL_REPLICA,
    LABEL_SPEC_HASH,
)
from controller.model.nodes import (
    LOST_SUFFIX,
    UNSCHEDULED,
    Availability,
    NodeState,
    ObservedNode,
    node_state,
)
from controller.model.replicas import Endpoint, Health, ObservedReplica, RunState

# Task states before `running`: Swarm is still bringing the task up.
_COMING_UP = frozenset({"new", "pending", "assigned", "accepted", "preparing", "ready", "starting"})
# Ends that are the app's (or its image's) doing: counted as restarts. Not `shutdown`
# (Berth or an update stopped it) nor a task whose node was lost.
_APP_ENDS = frozenset({"failed", "complete", "rejected"})


def task_order(task: dict[str, Any]) -> tuple[int, str]:
    return int((task.get("Version") or {}).get("Index", 0)), str(task.get("CreatedAt", ""))


def _state(task: dict[str, Any]) -> str:
    return str((task.get("Status") or {}).get("State", ""))


def current_task(tasks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The task that stands for the replica now: the newest one Swarm wants running, else
    the newest of all. While a start-first move brings a new task up, the old one (still
    wanted, still running) stands: the replica serves there until the new one runs."""
    wanted = sorted((t for t in tasks if t.get("DesiredState") == "running"), key=task_order)
    if wanted:
        if _state(wanted[-1]) != "running":
            serving = [t for t in wanted[:-1] if _state(t) == "running"]
            if serving:
                return serving[-1]
        return wanted[-1]
    return max(tasks, key=task_order) if tasks else None


def inspected_task(tasks: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The task an inspection reports: the current one, unless Swarm is still bringing it
    up after the app's own end of an earlier one (its restart policy runs a replacement at
    once, held `ready` for the restart delay). Then that end is the replica's news, with its
    exit code, error and time, as a restarting container's inspection shows its last exit;
    the replacement's state is what `observe` reports."""
    current = current_task(tasks)
    if current is None or _state(current) not in _COMING_UP:
        return current
    return _last_app_end(tasks) or current


def _last_app_end(tasks: list[dict[str, Any]]) -> dict[str, Any] | None:
    ended = [t for t in tasks if _state(t) in _APP_ENDS]
    return max(ended, key=task_order) if ended else None


def replica_state(task: dict[str, Any] | None) -> RunState:
    """A task's state in the one vocabulary: anything but running is `restarting`. Swarm
    brings tasks up and runs an ended one again (every service's restart policy is `any`,
    without a limit), so Berth never starts one itself: it would fight Swarm for it."""
    if task is not None and _state(task) == "running":
        return RunState.RUNNING
    return RunState.RESTARTING


def node_from_swarm(node: dict[str, Any]) -> ObservedNode:
    description = node.get("Description") or {}
    status = node.get("Status") or {}
    spec = node.get("Spec") or {}
    hostname = str(description.get("Hostname", node["ID"]))
    address = str(status.get("Addr", ""))
    try:
        availability = Availability(str(spec.get("Availability", "active")))
    except ValueError:
        availability = Availability.PAUSE
    return ObservedNode(
        id=str(node["ID"]),
        # Hostnames may repeat (engines sharing a UTS namespace): the address tells them apart
        name=f"{hostname}@{address}",
        address=address,
        role=str(spec.get("Role", "worker")),
        availability=availability,
        state=node_state(str(status.get("State", "unknown"))),
        labels={str(k): str(v) for k, v in (spec.get("Labels") or {}).items()},
        hostname=hostname,
        engine_version=str((description.get("Engine") or {}).get("EngineVersion", "")),
    )


def nodes_by_id(nodes: list[dict[str, Any]]) -> dict[str, ObservedNode]:
    return {str(n["ID"]): node_from_swarm(n) for n in nodes}


def _where(node: ObservedNode | None) -> str:
    if node is None:
        return UNSCHEDULED
    return node.name + ("" if node.state == NodeState.READY else LOST_SUFFIX)


def _why(task: dict[str, Any] | None, service: dict[str, Any], tasks: list[dict[str, Any]]) -> str:
    """Swarm's own words on a task that does not run; a placement Swarm cannot meet names
    the field and the rules. A task Swarm is bringing up again after an earlier try of the
    replica ended (a rejected image, a crash) says why that try ended: its own progress
    ("assigned: scheduler assigned task to node") would hide the reason for as long as each
    retry takes."""
    if task is None or _state(task) == "running":
        return ""
    status = task.get("Status") or {}
    text = str(status.get("Err") or "")
    if not text and _state(task) in _COMING_UP:
        ended = _last_app_end([t for t in tasks if task_order(t) < task_order(task)])
        ended_err = str(((ended or {}).get("Status") or {}).get("Err") or "")
        if ended is not None and ended_err:
            text = f"{ended_err} (last try {_state(ended)}; Swarm trying again: {_state(task)})"
        else:
            text = f"{_state(task)}: {status.get('Message') or 'waiting for Swarm'}"
    placement = ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("Placement") or {}
    if "no suitable node" in text and placement.get("Constraints"):
        text = f"placement [{', '.join(placement['Constraints'])}]: {text}"
    return text


def replica_from_service(
    service: dict[str, Any], tasks: list[dict[str, Any]], nodes: dict[str, ObservedNode]
) -> ObservedReplica:
    """One service (a replica) with its tasks, as the planner sees it. A task on a node
    Swarm no longer hears from is not running, whatever it last reported: Swarm will run it
    again elsewhere (`restarting`), and the replica names its node as lost. A task Swarm
    ran again because its node was lost is no restart of the app."""
    labels = (service.get("Spec") or {}).get("Labels") or {}
    replica_text = str(labels.get(LABEL_REPLICA, ""))
    task = current_task(tasks)
    status = (task or {}).get("Status") or {}
    node = nodes.get(str((task or {}).get("NodeID", "")))
    state = replica_state(task)
    if node is not None and node.state != NodeState.READY and state == RunState.RUNNING:
        state = RunState.RESTARTING
    endpoints = {}
    for port in (status.get("PortStatus") or {}).get("Ports") or ():
        target = int(port.get("TargetPort", 0))
        if port.get("Protocol", "tcp") == "tcp" and target not in endpoints and node:
            endpoints[target] = Endpoint(target, node.address, int(port["PublishedPort"]))
    earlier = sorted((t for t in tasks if t is not task), key=task_order)
    ended_on = [nodes.get(str(t.get("NodeID", ""))) for t in earlier]
    lost = [n for n in ended_on if n is not None and n.state != NodeState.READY]
    restarts = sum(
        1
        for t, on in zip(earlier, ended_on, strict=True)
        if _state(t) in _APP_ENDS and (on is None or on.state == NodeState.READY)
    )
    wanted = [t for t in tasks if t.get("DesiredState") == "running"]
    newest = max(wanted, key=task_order) if wanted else None
    moving = (
        f"moving: {_why(newest, service, tasks)}"
        if newest is not None and newest is not task
        else ""
    )
    moved_from = lost[-1].name if lost and (node is None or node.id != lost[-1].id) else ""
    return ObservedReplica(
        id=str(service["ID"]),
        name=str((service.get("Spec") or {}).get("Name", "")),
        deployment=labels.get(LABEL_DEPLOYMENT),
        replica=int(replica_text) if replica_text.isdigit() else None,
        spec_hash=labels.get(LABEL_SPEC_HASH),
        cluster=labels.get(LABEL_CLUSTER, DEFAULT_CLUSTER),
        proof=str(labels.get(LABEL_PROOF, "")),
        state=state,
        health=Health.NONE,  # Swarm runs a task `running` only once its healthcheck passes
        created=int(docker_time(service.get("CreatedAt")) or 0),
        endpoints=tuple(endpoints.values()),
        node=_where(node),
        restarts=restarts,
        note=_why(task, service, tasks) or moving,
        moved_from=moved_from,
    )


def placed_on(replica_tasks: list[dict[str, Any]]) -> str:
    """The node id a replica's current task is on ("" before Swarm assigned one)."""
    task = current_task(replica_tasks)
    return str((task or {}).get("NodeID") or "")
