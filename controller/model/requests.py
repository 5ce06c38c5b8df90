"""What a spec asks of a runtime for one replica: "run this revision's replica in this slot".

Pure: no I/O. Called by the executor before each placement (and by tests); the runtime
(`controller.gateways.docker_runtime`) turns the `ReplicaRequest` into its own arguments.
"""

from __future__ import annotations

import math

from controller.model.errors import InvalidSpec
from controller.model.names import (
    LABEL_CLUSTER,
    LABEL_DEPLOYMENT,
    LABEL_GENERATION,
    LABEL_PROOF,
    LABEL_REPLICA,
    LABEL_SPEC_HASH,
    LOOPBACK,
    container_name,
    network_name,
    volume_name,
)
from controller.model.provenance import creation_proof
from controller.model.replicas import HealthProbe, Limits, Mount, PublishedPort, ReplicaRequest
from controller.model.spec import DeploymentSpec, route_ports


def replica_request(
    spec: DeploymentSpec,
    replica: int,
    cluster: str,
    generation: int,
    publish_address: str = LOOPBACK,
    environment: dict[str, str] | None = None,
    proof_key: bytes | None = None,
) -> ReplicaRequest:
    """Replica `replica` of `spec`, labelled as Berth's, for a runtime to place;
    its `ports` bound to `publish_address` (BERTH_PUBLISH_ADDRESS), its routed ports to
    loopback (only the proxy reaches them); `environment` is `env` with its secrets
    resolved (required when it references any); with `proof_key`, the database's key, it
    carries Berth's proof of making it (`controller.model.provenance`)."""
    name = container_name(spec.name, replica, cluster, spec.spec_hash)
    labels = dict(spec.labels)
    labels.update(
        {
            LABEL_DEPLOYMENT: spec.name,
            LABEL_REPLICA: str(replica),
            LABEL_SPEC_HASH: spec.spec_hash,
            LABEL_CLUSTER: cluster,
            LABEL_GENERATION: str(generation),
        }
    )
    if proof_key is not None:
        labels[LABEL_PROOF] = creation_proof(
            proof_key, cluster, spec.name, replica, spec.spec_hash, name
        )
    probe = None
    if spec.healthcheck is not None:
        check = spec.healthcheck
        probe = HealthProbe(
            tuple(check.test),
            check.interval_s,
            check.timeout_s,
            check.retries,
            check.start_period_s,
        )
    if spec.image is None:
        raise InvalidSpec("image: a source deployment has no image until its build succeeds")
    return ReplicaRequest(
        name=name,
        image=spec.image,
        command=tuple(spec.command) if spec.command is not None else None,
        environment=environment if environment is not None else spec.environment({}),
        labels=labels,
        ports=tuple(
            PublishedPort(p.container, p.protocol, p.host, publish_address) for p in spec.ports
        )
        + tuple(PublishedPort(port, "tcp", None, LOOPBACK) for port in sorted(route_ports(spec))),
        healthcheck=probe,
        mounts=tuple(
            Mount(
                "volume" if volume.name is not None else "bind",
                volume_name(spec.name, volume.name, cluster)
                if volume.name is not None
                else str(volume.source),
                volume.target,
                not volume.writable,
                volume.name or "",
                volume.driver or "local",
            )
            for volume in spec.volumes
        ),
        networks=tuple(network_name(network, cluster) for network in spec.networks),
        aliases=(spec.name,) if spec.networks else (),
        limits=Limits(
            spec.resources.memory_bytes,
            None if spec.resources.cpus is None else round(spec.resources.cpus * 1e9),
            spec.resources.pids,
        ),
        stop_signal=spec.stop_signal,
        stop_timeout_s=None if spec.stop_grace_s is None else math.ceil(spec.stop_grace_s),
        user=spec.user,
        read_only=spec.read_only,
        cap_add=tuple(spec.cap_add),
        cap_drop=tuple(spec.cap_drop),
        init=spec.init,
        privileged=spec.privileged,
        network_mode=spec.network_mode,
        pid_mode=spec.pid_mode,
        ipc_mode=spec.ipc_mode,
        devices=tuple(spec.devices),
        placement=spec.placement.rules(),
        deployment_replicas=spec.replicas,
    )
