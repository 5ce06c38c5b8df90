"""What one replica is as a Swarm service: `create_service` arguments from a `ReplicaRequest`.

Called by the swarm runtime (`controller.gateways.swarm_runtime.SwarmRuntime.place`). Pure
apart from the Docker vocabulary: no call is made here. A replica is a service of one task
(see the runtime's docstring) with host-mode published ports and a `dnsrr` endpoint (no
routing mesh on this kernel, and none needed: the proxy reaches each task at its node).

- Networks are Berth's overlay networks (made attachable by `SwarmStorage`), joined under
  the deployment's name as an alias: `db` resolves, from any node, to every task of `db`.
- A named volume of the `local` driver is node-local: Swarm makes it on the node that runs
  the task, with Berth's labels (`VolumeOptions`), and the runtime pins the replica to the
  node holding it. Two replicas cannot share one node-local volume on two nodes: more than
  one replica with one is refused naming the field. A volume naming another driver (a
  plugin that shares it across nodes) is made by that driver on every node that needs it,
  and is pinned nowhere. Binds are host paths of whichever node runs
  the task, checked against BERTH_ALLOWED_BIND_PATHS as on one host.
- What Swarm services cannot do (devices, privileged, the host's namespaces) is refused
  naming the field: a permanent failure, never a silent difference.
"""

from __future__ import annotations

from typing import Any

from controller.gateways.docker_engine import NANOSECONDS, healthcheck_arguments
from controller.model.errors import InvalidSpec
from controller.model.names import LABEL_CLUSTER, LABEL_DEPLOYMENT, LABEL_VOLUME
from controller.model.replicas import Mount, ReplicaRequest


def node_local_volumes(request: ReplicaRequest) -> tuple[str, ...]:
    """The Docker names of the request's named volumes of the `local` driver (each lives on
    one node; another driver's may be shared across nodes)."""
    return tuple(m.source for m in request.mounts if m.kind == "volume" and m.driver == "local")


def _refusals(request: ReplicaRequest) -> None:
    unsupported = {
        "devices": request.devices,
        "privileged": request.privileged,
        "network_mode": request.network_mode,
        "pid_mode": request.pid_mode,
        "ipc_mode": request.ipc_mode,
    }
    for field, value in unsupported.items():
        if value:
            raise InvalidSpec(f"{field}: not supported by the swarm runtime")
    if request.deployment_replicas > 1:
        for index, mount in enumerate(request.mounts):
            if mount.kind == "volume" and mount.driver == "local":
                raise InvalidSpec(
                    f"volumes[{index}]: named volume {mount.volume!r} lives on one node of the "
                    f"swarm, and {request.deployment_replicas} replicas cannot share it: run "
                    f"1 replica, or name a volume driver that shares it across nodes "
                    f"(volumes[{index}].driver)"
                )


def _mount(mount: Mount, labels: dict[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {
        "Type": mount.kind,
        "Source": mount.source,
        "Target": mount.target,
        "ReadOnly": mount.read_only,
    }
    if mount.kind == "volume":
        found["VolumeOptions"] = {
            "Labels": {
                LABEL_CLUSTER: labels.get(LABEL_CLUSTER, ""),
                LABEL_DEPLOYMENT: labels.get(LABEL_DEPLOYMENT, ""),
                LABEL_VOLUME: mount.volume,
            },
            "DriverConfig": {"Name": mount.driver},
        }
    return found


def service_spec(request: ReplicaRequest, constraints: tuple[str, ...] = ()) -> dict[str, Any]:
    """`create_service` arguments for one replica; what the swarm runtime cannot give is
    refused naming the field (InvalidSpec)."""
    _refusals(request)
    container: dict[str, Any] = {
        "Image": request.image,
        "Env": [f"{key}={value}" for key, value in request.environment.items()],
        "Labels": dict(request.labels),
        "ReadOnly": request.read_only,
        "Init": request.init,
    }
    if request.command is not None:
        container["Args"] = list(request.command)  # CMD; Swarm's `Command` is the entrypoint
    if request.user is not None:
        container["User"] = request.user
    if request.stop_signal is not None:
        container["StopSignal"] = request.stop_signal
    if request.stop_timeout_s is not None:
        container["StopGracePeriod"] = request.stop_timeout_s * NANOSECONDS
    if request.cap_add:
        container["CapabilityAdd"] = list(request.cap_add)
    if request.cap_drop:
        container["CapabilityDrop"] = list(request.cap_drop)
    if request.mounts:
        container["Mounts"] = [_mount(m, request.labels) for m in request.mounts]
    if request.healthcheck is not None:
        container["Healthcheck"] = {
            key.title().replace("_", ""): value
            for key, value in healthcheck_arguments(request.healthcheck).items()
        }
    limits = {
        key: value
        for key, value in (
            ("MemoryBytes", request.limits.memory_bytes),
            ("NanoCPUs", request.limits.nano_cpus),
            ("Pids", request.limits.pids),
        )
        if value is not None
    }
    template: dict[str, Any] = {
        "ContainerSpec": container,
        "RestartPolicy": {"Condition": "any", "Delay": NANOSECONDS, "MaxAttempts": 0},
    }
    if limits:
        template["Resources"] = {"Limits": limits}
    if constraints:
        template["Placement"] = {"Constraints": list(constraints)}
    if request.networks:
        template["Networks"] = [
            {"Target": network, "Aliases": list(request.aliases)} for network in request.networks
        ]
    ports = [
        {
            "Protocol": port.protocol,
            "TargetPort": port.container,
            "PublishMode": "host",
            **({"PublishedPort": port.host} if port.host is not None else {}),
        }
        for port in request.ports
    ]
    return {
        "task_template": template,
        "name": request.name,
        "labels": dict(request.labels),
        "mode": {"Replicated": {"Replicas": 1}},
        "endpoint_spec": {"Mode": "dnsrr", "Ports": ports},
    }
