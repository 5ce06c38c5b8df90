"""The docker runtime: the loop's `Runtime` port on one Docker engine, a replica a container.

Called by the loop through `controller.loop.ports.Runtime` (the executor places, starts,
restarts and retires replicas; the reconciler and the resync observe them; the restart
gate inspects them), and by the API and CLI for a replica's output. It turns a
`ReplicaRequest` into Docker's own arguments here and nowhere else; Docker's answers about
containers become `ObservedReplica`s in `controller.gateways.docker_replicas`. A deployment
is observed with the low-level list call, which returns labels, state and health for every
container in one request; after acting, a pass reads the few it changed one by one. Every
call treats "already done" as success: a create whose name exists with the same identity
returns that container, a start of a running container and a removal of a missing one
succeed. Calls go through `DockerGateway` (`controller.gateways.docker_engine`), which
translates errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

import docker.errors
import docker.types

from controller.gateways.docker_engine import (
    DockerGateway,
    healthcheck_arguments,
    translated,
)
from controller.gateways.docker_replicas import (
    inspection_from_state,
    replica_from_inspect,
    replica_from_summary,
)
from controller.gateways.retry import retry_transient
from controller.model.claims import EngineClaim, claim_labels, claim_volume
from controller.model.errors import (
    DockerConflict,
    DockerRejected,
    DockerServerError,
    ImageVanished,
    InvalidSpec,
    NameTaken,
    ReplicaVanished,
)
from controller.model.names import (
    LABEL_DEPLOYMENT,
    LOCAL_NODE,
    same_replica,
)
from controller.model.nodes import Availability, NodeState, ObservedNode
from controller.model.replicas import (
    ObservedReplica,
    ReplicaInspection,
    ReplicaRequest,
    RunState,
)

NO_SUCH_IMAGE = "No such image"  # the engine's answer to a create whose image is missing
# After acting, a pass that changed this many containers or fewer (and every one its
# deployment had) reads them one by one rather than listing: `observe_after`.
READ_ONE_BY_ONE_AT_MOST = 2


def reads_one_by_one(before: Sequence[ObservedReplica], changed: Collection[str]) -> bool:
    """Whether a read-back after acting inspects `changed` one by one: they were every
    container the deployment had (`before`), and few (see `observe_after`)."""
    return len(changed) <= READ_ONE_BY_ONE_AT_MOST and all(r.id in changed for r in before)


def docker_arguments(request: ReplicaRequest) -> dict[str, Any]:
    """`create_container` keyword arguments for `request` (plus `port_bindings`)."""
    if not request.placement.empty:
        raise InvalidSpec(
            "placement: the docker runtime runs every replica on its one engine; "
            "placement needs BERTH_RUNTIME=swarm"
        )
    probe = request.healthcheck
    arguments: dict[str, Any] = {
        "image": request.image,
        "command": list(request.command) if request.command is not None else None,
        "environment": dict(request.environment),
        "labels": dict(request.labels),
        "ports": [(port.container, port.protocol) for port in request.ports] or None,
        "port_bindings": {
            f"{p.container}/{p.protocol}": p.host if p.host_ip is None else (p.host_ip, p.host)
            for p in request.ports
        }
        or None,
        "healthcheck": None if probe is None else healthcheck_arguments(probe),
    }
    optional = {
        "user": request.user,
        "stop_signal": request.stop_signal,
        "stop_timeout": request.stop_timeout_s,
    }
    arguments.update({key: value for key, value in optional.items() if value is not None})
    return arguments


def host_config_arguments(request: ReplicaRequest) -> dict[str, Any]:
    """`create_host_config` keyword arguments for `request`: only what it asks for, so a
    container of an older spec is created exactly as before."""
    limits = request.limits
    network_mode = request.network_mode or (request.networks[0] if request.networks else None)
    wanted: dict[str, Any] = {
        "mounts": [
            docker.types.Mount(
                m.target,
                m.source,
                type="volume" if m.kind == "volume" else "bind",
                read_only=m.read_only,
            )
            for m in request.mounts
        ],
        "mem_limit": limits.memory_bytes,
        "nano_cpus": limits.nano_cpus,
        "pids_limit": limits.pids,
        "read_only": request.read_only,
        "cap_add": list(request.cap_add),
        "cap_drop": list(request.cap_drop),
        "init": request.init,
        "privileged": request.privileged,
        "network_mode": network_mode,
        "pid_mode": request.pid_mode,
        "ipc_mode": request.ipc_mode,
        "devices": [f"{device}:{device}:rwm" for device in request.devices],
    }
    return {key: value for key, value in wanted.items() if value not in (None, False, [])}


class DockerRuntime:
    """The `Runtime` port on the engine `docker` talks to: a replica is a container."""

    announces_changes = True  # the engine's container and health events wake the loop

    def __init__(self, docker: DockerGateway, node: str = LOCAL_NODE) -> None:
        self.docker = docker
        self.api = docker.api
        self.node = node

    def accepting(self) -> bool:
        return self.docker.accepting()

    @retry_transient
    def observe(self, deployment: str | None = None) -> list[ObservedReplica]:
        """Every container carrying a deployment label (of one deployment if named): one call."""
        label = LABEL_DEPLOYMENT if deployment is None else f"{LABEL_DEPLOYMENT}={deployment}"
        with translated("list"):
            summaries = self.api.containers(all=True, filters={"label": [label]})
        return [replica_from_summary(summary, self.node) for summary in summaries]

    def observe_after(
        self, deployment: str, before: Sequence[ObservedReplica], changed: Collection[str]
    ) -> list[ObservedReplica]:
        """`deployment`'s containers after a pass changed `changed` (ids) of those it
        observed in `before`. The engine's list filters by label over every container it
        has (2.2 ms of its CPU per call at 200 containers, an inspect 0.35 ms), so when the
        pass changed every container the deployment had, and at most
        `READ_ONE_BY_ONE_AT_MOST`, those are read one by one (one gone is left out); else
        the deployment is listed again, and what changed beside the pass shows too."""
        if not reads_one_by_one(before, changed):
            return self.observe(deployment)
        found = [replica for replica in map(self._read, changed) if replica is not None]
        return sorted(found, key=lambda replica: replica.created, reverse=True)  # as listed

    @retry_transient
    def _read(self, replica_id: str) -> ObservedReplica | None:
        """One container as observed; None if it is gone."""
        try:
            with translated("inspect", replica_id[:12]):
                return replica_from_inspect(self.api.inspect_container(replica_id), self.node)
        except ReplicaVanished:
            return None

    def nodes(self) -> list[ObservedNode]:
        """This runtime's one node: the engine."""
        return [
            ObservedNode(
                id=LOCAL_NODE,
                name=self.node,
                address="",
                role="engine",
                availability=Availability.ACTIVE,
                state=NodeState.READY,
                hostname=self.node,
            )
        ]

    def prepare_image(self, image: str, before_pull: Callable[[], None] | None = None) -> str:
        """The image where replicas run: 'present', 'pulled', or ImageUnavailable."""
        return self.docker.ensure_image(image, before_pull)

    @retry_transient
    def place(self, request: ReplicaRequest) -> str:
        """Create the replica's container (not started); its id. A repeat finds the first."""
        arguments = docker_arguments(request)
        with translated("create", request.name, timed=False):  # local: no request sent
            host_config = self.api.create_host_config(
                port_bindings=arguments.pop("port_bindings"), **host_config_arguments(request)
            )
            if request.networks:  # the first network at create, under the aliases
                arguments["networking_config"] = {
                    "EndpointsConfig": {request.networks[0]: {"Aliases": list(request.aliases)}}
                }
        try:
            with translated("create", request.name):
                created = self.api.create_container(
                    **arguments, host_config=host_config, name=request.name, detach=True
                )
            container_id = str(created["Id"])
        except DockerConflict:
            container_id = self._existing_with_same_identity(request.name, request.labels)
        except DockerRejected as error:
            if NO_SUCH_IMAGE not in str(error):
                raise
            # Removed since the pass saw it (`ensure_image` trusts a recent look): plan
            # again at once, and that pass looks for it (and pulls it) anew.
            self.docker.forget_image(request.image)
            raise ImageVanished(f"{error}: looked for again") from error
        self._join_networks(container_id, request)
        return container_id

    def _join_networks(self, container_id: str, request: ReplicaRequest) -> None:
        """The networks after the first (joined at create); already joined counts as done."""
        for network in request.networks[1:]:
            try:
                with translated("connect", network):
                    self.api.connect_container_to_network(
                        container_id, network, aliases=list(request.aliases)
                    )
            except (DockerRejected, DockerConflict, DockerServerError) as error:
                if "already exists" not in str(error):
                    raise

    def _existing_with_same_identity(self, name: str, labels: dict[str, str]) -> str:
        with translated("inspect", name):
            existing = self.api.inspect_container(name)
        found = existing["Config"].get("Labels") or {}
        if LABEL_DEPLOYMENT not in found:
            raise NameTaken(
                f"container name {name!r} is held by a container without Berth's labels "
                f"({existing['Id'][:12]}); Berth never touches it: rename or remove it"
            )
        if same_replica(found, labels):
            return str(existing["Id"])
        raise DockerConflict(f"container name {name!r} is still held by an older container")

    @retry_transient
    def start(self, replica_id: str, from_state: RunState = RunState.CREATED) -> None:
        with translated("start", replica_id[:12]):
            if from_state == RunState.PAUSED:
                self.api.unpause(replica_id)
            else:
                self.api.start(replica_id)

    @retry_transient
    def restart(self, replica_id: str, grace_s: int) -> None:
        with translated("restart", replica_id[:12]):
            self.api.restart(replica_id, timeout=grace_s)

    @retry_transient
    def retire(self, replica_id: str, grace_s: int) -> None:
        """Stop gracefully, then remove with its anonymous volumes. Missing = done."""
        try:
            with translated("remove", replica_id[:12]):
                try:
                    self.api.stop(replica_id, timeout=grace_s)
                except docker.errors.APIError as error:
                    if error.status_code not in (304, 409):  # already stopped / paused
                        raise
                self.api.remove_container(replica_id, v=True, force=True)
        except ReplicaVanished:
            return
        except DockerRejected as error:
            if "is already in progress" in str(error):
                return
            raise
        except DockerConflict as error:
            if "already in progress" in str(error):
                return
            raise

    def inspect(self, replica_id: str) -> ReplicaInspection:
        """Why one replica stopped or is unhealthy (exit code, OOM, last health output)."""
        with translated("inspect", replica_id[:12]):
            state = dict(self.api.inspect_container(replica_id).get("State") or {})
        return inspection_from_state(state)

    def output_tail(self, replica_id: str, lines: int = 20) -> str:
        with translated("logs", replica_id[:12]):
            output = self.api.logs(replica_id, tail=lines, stdout=True, stderr=True)
        return output.decode(errors="replace") if isinstance(output, bytes) else str(output)

    def claim_engine(self, cluster: str, database_id: str) -> EngineClaim:
        """The marker of who manages this engine for `cluster`: written by the first Berth
        database to ask (a volume whose labels Docker never changes: a second create of the
        name returns the first), read back by every later one."""
        name = claim_volume(cluster)
        labels = claim_labels(cluster, str(uuid.uuid4()), database_id)
        with translated("create_volume", name):
            self.api.create_volume(name, labels=labels)
        with translated("inspect_volume", name):
            claim = EngineClaim.from_labels(self.api.inspect_volume(name).get("Labels") or {})
        if claim is None:
            raise NameTaken(
                f"volume {name!r} exists without Berth's claim labels: Berth never touches it; "
                "remove or rename it"
            )
        return claim

    def release_claim(self, cluster: str) -> None:
        """Remove the claim of a cluster that is gone for good (benchmarks and tests)."""
        try:
            with translated("remove_volume", claim_volume(cluster)):
                self.api.remove_volume(claim_volume(cluster))
        except DockerRejected:  # none
            return

    def follow_output(self, replica_id: str, lines: int, follow: bool) -> Iterator[str]:
        """A replica's output (`berth logs`): the last `lines`, then new ones if `follow`."""
        return self.docker.follow_logs(replica_id, lines, follow)
