"""Docker's answers about containers as the loop's values: an entry of the container list and
a container's inspect as the same `ObservedReplica`, the `State` block as a
`ReplicaInspection`.

Called by the docker runtime (`controller.gateways.docker_runtime`): a pass observes a
deployment with one list, and after acting reads the containers it changed one by one
(`DockerRuntime.observe_after`), so both answers must read back alike: state and health in
the one vocabulary, a published port as the address the proxy reaches (a port bound to
every interface is reached on loopback: Berth's proxy runs beside this engine).
tests/integration/test_docker_client.py holds the two to each other on the real engine.
"""

from __future__ import annotations

import re
from typing import Any

from controller.gateways.docker_engine import docker_time
from controller.model.names import (
    DEFAULT_CLUSTER,
    LABEL_CLUSTER,
    LABEL_DEPLOYMENT,
    LABEL_PROOF,
    LABEL_REPLICA,
    LABEL_SPEC_HASH,
    LOCAL_NODE,
    LOOPBACK,
)
from controller.model.replicas import (
    Endpoint,
    Health,
    ObservedReplica,
    ReplicaInspection,
    run_state,
)

_HEALTH_IN_STATUS = re.compile(r"\((healthy|unhealthy|health: starting)\)")
_EVERY_INTERFACE = ("0.0.0.0", "", "::")
_HEALTH_STATES = frozenset(h.value for h in (Health.STARTING, Health.HEALTHY, Health.UNHEALTHY))


def health_from_status(status_text: str) -> Health:
    """The health Docker shows in a container's status text ("Up 3 seconds (healthy)")."""
    match = _HEALTH_IN_STATUS.search(status_text or "")
    if not match:
        return Health.NONE
    return Health.STARTING if match.group(1) == "health: starting" else Health(match.group(1))


def _replica(
    labels: dict[str, str],
    *,
    id: str,
    name: str,
    state: str,
    health: Health,
    created: int,
    endpoints: dict[int, Endpoint],
    node: str,
) -> ObservedReplica:
    """What the list's entry and the inspect read alike: the labels, the state's word."""
    replica_text = labels.get(LABEL_REPLICA, "")
    return ObservedReplica(
        id=id,
        name=name.lstrip("/"),
        deployment=labels.get(LABEL_DEPLOYMENT),
        replica=int(replica_text) if replica_text.isdigit() else None,
        spec_hash=labels.get(LABEL_SPEC_HASH),
        cluster=labels.get(LABEL_CLUSTER, DEFAULT_CLUSTER),
        proof=str(labels.get(LABEL_PROOF, "")),
        state=run_state(state),
        health=health,
        created=created,
        endpoints=tuple(endpoints[port] for port in sorted(endpoints)),
        node=node,
    )


def _endpoint(private: int, host: str, public: int) -> Endpoint:
    """A port bound to every interface is reached on loopback (Berth's proxy runs beside
    this engine)."""
    return Endpoint(private, LOOPBACK if host in _EVERY_INTERFACE else host, public)


def replica_from_summary(summary: dict[str, Any], node: str = LOCAL_NODE) -> ObservedReplica:
    """One entry of Docker's container list as the replica the planner sees."""
    endpoints: dict[int, Endpoint] = {}
    for port in summary.get("Ports") or ():
        if not port.get("PublicPort") or port.get("Type", "tcp") != "tcp":
            continue
        private = int(port["PrivatePort"])
        if private not in endpoints:  # listed once per address family: the first one
            endpoints[private] = _endpoint(
                private, str(port.get("IP") or ""), int(port["PublicPort"])
            )
    return _replica(
        summary.get("Labels") or {},
        id=summary["Id"],
        name=(summary.get("Names") or [""])[0],
        state=str(summary.get("State", "")),
        health=health_from_status(summary.get("Status", "")),
        created=int(summary.get("Created", 0)),
        endpoints=endpoints,
        node=node,
    )


def replica_from_inspect(inspected: dict[str, Any], node: str = LOCAL_NODE) -> ObservedReplica:
    """A container's inspect as the replica the planner sees: what `replica_from_summary`
    reads from its entry of the list, from the inspect's own fields."""
    state = inspected.get("State") or {}
    endpoints: dict[int, Endpoint] = {}
    ports = (inspected.get("NetworkSettings") or {}).get("Ports") or {}
    for key, bindings in ports.items():
        private, _, protocol = str(key).partition("/")
        bound = [b for b in bindings or () if b.get("HostPort")]
        if protocol == "tcp" and bound:  # one per address family: the first one
            endpoints[int(private)] = _endpoint(
                int(private), str(bound[0].get("HostIp") or ""), int(bound[0]["HostPort"])
            )
    # As the list's status text shows it: only for a running container, not paused or
    # restarting (Docker's `State.String`).
    shown = state.get("Running") and not state.get("Paused") and not state.get("Restarting")
    health = (state.get("Health") or {}).get("Status") if shown else None
    return _replica(
        (inspected.get("Config") or {}).get("Labels") or {},
        id=inspected["Id"],
        name=str(inspected.get("Name") or ""),
        state=str(state.get("Status", "")),
        health=Health(health) if health in _HEALTH_STATES else Health.NONE,
        created=int(docker_time(inspected.get("Created")) or 0),
        endpoints=endpoints,
        node=node,
    )


def inspection_from_state(state: dict[str, Any]) -> ReplicaInspection:
    """The `State` block of a container's inspect as what failure messages need."""
    health_log = (state.get("Health") or {}).get("Log") or []
    exit_code = state.get("ExitCode")
    return ReplicaInspection(
        status=str(state.get("Status", "unknown")),
        exit_code=int(exit_code) if exit_code is not None else None,
        oom_killed=bool(state.get("OOMKilled")),
        health_output=str(health_log[-1].get("Output", "")).strip() if health_log else "",
        finished_at=docker_time(state.get("FinishedAt")),
        started_at=docker_time(state.get("StartedAt")),
    )
