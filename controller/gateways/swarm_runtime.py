"""The swarm runtime: the loop's `Runtime` port on a Docker Swarm (`BERTH_RUNTIME=swarm`).

Called by the loop through `controller.loop.ports.Runtime`, like the docker runtime, with
`DOCKER_HOST` pointing at a manager. A replica is a Swarm service of one task, named and
labelled as the docker runtime names and labels a container (deployment, slot, revision,
cluster): Swarm places it on a node, restarts it, and runs it again elsewhere when its node
is lost, while Berth keeps its own rollout, rollback and status at the level of revisions
and slots. A service per slot, not one per revision: Swarm cannot retire one chosen task of
a replicated service (scaling down removes the highest slot), and start-first rollouts
retire old replicas slot by slot.

Observed state comes from tasks, never from Swarm's update status: a replica is running
only when its current task runs, on the node it names, at that node's address and the
port Swarm published there (host mode with `dnsrr` endpoints: no routing mesh). A task
Swarm is still bringing up, or restarting after a failure, is `restarting`, and its error
text ("no suitable node", "No such image") is what `inspect` tells. Updates carry the
service's version and are retried on "update out of sequence".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

from controller.gateways.docker_engine import DockerGateway, docker_time, translated
from controller.gateways.retry import retry_transient
from controller.gateways.swarm_spec import node_local_volumes, service_spec
from controller.gateways.swarm_tasks import (
    inspected_task,
    nodes_by_id,
    placed_on,
    replica_from_service,
)
from controller.model.claims import EngineClaim, claim_labels, claim_volume
from controller.model.errors import (
    DockerConflict,
    DockerRejected,
    NameTaken,
    ReplicaVanished,
)
from controller.model.names import (
    LABEL_CLUSTER,
    LABEL_DEPLOYMENT,
    LABEL_REPLICA,
    LABEL_VOLUME_HOME,
    same_replica,
)
from controller.model.nodes import Availability, ObservedNode
from controller.model.replicas import (
    ObservedReplica,
    ReplicaInspection,
    ReplicaRequest,
    RunState,
)
from controller.policy.placement import slot_constraints, volume_home

# How long a placement that spreads or caps waits for Swarm to assign its task a node.
ASSIGN_WAIT_S = 5.0
OBSERVE_ATTEMPTS = 3  # a service removed during a look: looked at again


def update_node_spec(
    api: Any, node_id: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> None:
    """Change a node's spec at its current version: `change` gets a copy and returns the new
    spec, or None when there is nothing to change. An out-of-sequence update (the node
    changed meanwhile) is a conflict, retried by the caller's `retry_transient`."""
    with translated("update_node", node_id[:12]):
        node = api.inspect_node(node_id)
        spec = change(dict(node["Spec"]))
        if spec is not None:
            api.update_node(node_id, int(node["Version"]["Index"]), spec)


class SwarmRuntime:
    """The `Runtime` port on the swarm whose manager `docker` talks to."""

    # Swarm has no events for a task's start or health on another node: the loop looks again.
    announces_changes = False

    def __init__(self, docker: DockerGateway) -> None:
        self.docker = docker
        self.api = docker.api
        self._placing: dict[str, threading.Lock] = {}
        self._placing_lock = threading.Lock()

    def accepting(self) -> bool:
        return self.docker.accepting()

    @retry_transient
    def observe(self, deployment: str | None = None) -> list[ObservedReplica]:
        """Every service carrying a deployment label (or `deployment`'s), with its tasks (of
        those services only, for one deployment): three calls. A service removed between
        the list and the ask for its tasks (Swarm then refuses the whole ask) is gone: the
        list is taken again, at most `OBSERVE_ATTEMPTS` times."""
        attempt = 1
        while True:
            try:
                return self._observe_once(deployment)
            except ReplicaVanished:
                if attempt >= OBSERVE_ATTEMPTS:
                    raise
                attempt += 1

    def _observe_once(self, deployment: str | None) -> list[ObservedReplica]:
        label = LABEL_DEPLOYMENT if deployment is None else f"{LABEL_DEPLOYMENT}={deployment}"
        with translated("list"):
            services = self.api.services(filters={"label": [label]})
            ids = [str(service["ID"]) for service in services]
            scope = {"service": ids} if deployment is not None else None
            tasks = self.api.tasks(filters=scope) if services else []
            nodes = self.api.nodes() if services else []
        known = nodes_by_id(nodes)
        by_service: dict[str, list[dict[str, Any]]] = {}
        for task in tasks:
            by_service.setdefault(str(task.get("ServiceID")), []).append(task)
        return [
            replica_from_service(service, by_service.get(str(service["ID"]), []), known)
            for service in services
        ]

    def observe_after(
        self, deployment: str, before: Sequence[ObservedReplica], changed: Collection[str]
    ) -> list[ObservedReplica]:
        """Listed again: a service's tasks are read with it, whatever changed."""
        return self.observe(deployment)

    def prepare_image(self, image: str, before_pull: Callable[[], None] | None = None) -> str:
        """Each node pulls (or finds) the image when Swarm gives it a task; a node that
        lacks it says so in its task's error, which `inspect` reports."""
        return "left to the nodes"

    @retry_transient
    def place(self, request: ReplicaRequest) -> str:
        """Create the replica's service, constrained by its placement (`slot_constraints`:
        the declared constraints, and those that spread the deployment and cap it per node);
        a repeat finds the first (by its identity).

        A spread or a cap counts where the deployment's other slots run, so one slot's
        placement must be seen before the next is decided: the deployment's slots are
        placed one at a time, each waiting (at most ASSIGN_WAIT_S) until Swarm has given
        its task a node. Slots placed at once would each count none of the others."""
        rules = request.placement
        if rules.spread is None and rules.max_per_node is None:
            return self._create(request)
        deployment = request.labels.get(LABEL_DEPLOYMENT, "")
        with self._placing_lock:
            lock = self._placing.setdefault(deployment, threading.Lock())
        with lock:
            service_id = self._create(request)
            deadline = time.monotonic() + ASSIGN_WAIT_S
            while time.monotonic() < deadline:
                with translated("inspect", service_id[:12]):
                    if placed_on(self.api.tasks(filters={"service": service_id})):
                        break
                time.sleep(0.05)
            return service_id

    def _create(self, request: ReplicaRequest) -> str:
        arguments = service_spec(request, self._constraints(request))
        try:
            with translated("create", request.name):
                created = self.api.create_service(**arguments)
            return str(created["ID"])
        except DockerConflict:
            return self._existing_with_same_identity(request.name, request.labels)

    def _constraints(self, request: ReplicaRequest) -> tuple[str, ...]:
        rules = request.placement
        volumes = node_local_volumes(request)
        if rules.spread is None and rules.max_per_node is None and not volumes:
            return rules.constraints
        if volumes:  # one replica, pinned where its volume lives: only the nodes matter
            with translated("nodes"):
                nodes = list(nodes_by_id(self.api.nodes()).values())
            return (*rules.constraints, *self._volume_home(request, volumes, nodes))
        deployment = request.labels.get(LABEL_DEPLOYMENT, "")
        with translated("list"):
            services = self.api.services(filters={"label": [f"{LABEL_DEPLOYMENT}={deployment}"]})
            ids = [str(service["ID"]) for service in services]
            tasks = self.api.tasks(filters={"service": ids}) if ids else []
            nodes = list(nodes_by_id(self.api.nodes()).values())
        by_service: dict[str, list[dict[str, Any]]] = {}
        for task in tasks:
            by_service.setdefault(str(task.get("ServiceID")), []).append(task)
        placed = []
        for service in services:
            slot_text = str(((service.get("Spec") or {}).get("Labels") or {}).get(LABEL_REPLICA))
            if slot_text.isdigit():
                on = placed_on(by_service.get(str(service["ID"]), []))
                placed.append((int(slot_text), on))
        slot = int(request.labels.get(LABEL_REPLICA, "-1"))
        return slot_constraints(rules, slot, nodes, placed)

    def _volume_home(
        self, request: ReplicaRequest, volumes: tuple[str, ...], nodes: list[ObservedNode]
    ) -> tuple[str, ...]:
        """`node.id==` the node holding the replica's node-local volumes: the one labelled
        as their home, else one chosen now and labelled (before the service exists, so a
        repeat or the next revision finds the same node). With no node to choose, the
        declared constraints go alone and Swarm's "no suitable node" says why."""
        home, chosen_now = volume_home(volumes, request.placement, nodes)
        if home is None:
            return ()
        if chosen_now:
            cluster = request.labels.get(LABEL_CLUSTER, "")
            homes = {f"{LABEL_VOLUME_HOME}.{volume}": cluster for volume in volumes}
            update_node_spec(
                self.api,
                home.id,
                lambda spec: {**spec, "Labels": {**(spec.get("Labels") or {}), **homes}},
            )
        return (f"node.id=={home.id}",)

    def _existing_with_same_identity(self, name: str, labels: dict[str, str]) -> str:
        with translated("inspect", name):
            existing = self.api.inspect_service(name)
        found = (existing.get("Spec") or {}).get("Labels") or {}
        if LABEL_DEPLOYMENT not in found:
            raise NameTaken(
                f"service name {name!r} is held by a service without Berth's labels; "
                "Berth never touches it: rename or remove it"
            )
        if same_replica(found, labels):
            return str(existing["ID"])
        raise DockerConflict(f"service name {name!r} is still held by an older service")

    def start(self, replica_id: str, from_state: RunState = RunState.CREATED) -> None:
        """Swarm starts a service's task itself: this only checks that the replica is
        still there (a vanished one is refused, as by the docker runtime)."""
        with translated("inspect", replica_id[:12]):
            self.api.inspect_service(replica_id)

    @retry_transient
    def restart(self, replica_id: str, grace_s: int) -> None:
        """A new task for the replica (ForceUpdate) at the service's current version, the
        old one stopped first, as the docker runtime restarts a container."""
        self._force_update(replica_id, "stop-first")

    @retry_transient
    def move_off(self, replica_id: str) -> None:
        """A new task for the replica, started before the old one stops (a drain's move:
        the node it leaves takes no new task, so Swarm runs the new one elsewhere)."""
        self._force_update(replica_id, "start-first")

    def _force_update(self, replica_id: str, order: str) -> None:
        with translated("update", replica_id[:12]):
            service = self.api.inspect_service(replica_id)
            spec = service["Spec"]
            template = spec["TaskTemplate"]
            template["ForceUpdate"] = int(template.get("ForceUpdate", 0)) + 1
            self.api.update_service(
                replica_id,
                version=int(service["Version"]["Index"]),
                task_template=template,
                name=spec.get("Name"),
                labels=spec.get("Labels"),
                mode=spec.get("Mode"),
                endpoint_spec=spec.get("EndpointSpec"),
                update_config={"Order": order, "FailureAction": "pause"},
            )

    @retry_transient
    def nodes(self) -> list[ObservedNode]:
        """The swarm's nodes (one call)."""
        with translated("nodes"):
            return sorted(nodes_by_id(self.api.nodes()).values(), key=lambda n: n.name)

    @retry_transient
    def set_availability(self, node_id: str, availability: Availability) -> None:
        """Set a node's availability at its current version (an out-of-sequence update is
        retried with the new version)."""

        def change(spec: dict[str, Any]) -> dict[str, Any] | None:
            if spec.get("Availability") == availability:
                return None
            return {**spec, "Availability": str(availability)}

        update_node_spec(self.api, node_id, change)

    @retry_transient
    def retire(self, replica_id: str, grace_s: int) -> None:
        """Remove the replica's service (its task stops with the service's grace)."""
        try:
            with translated("remove", replica_id[:12]):
                self.api.remove_service(replica_id)
        except ReplicaVanished:
            return

    def inspect(self, replica_id: str) -> ReplicaInspection:
        """The current task's state, exit code, when it ended and Swarm's own error text; the
        last exit's while Swarm brings a replacement up (`inspected_task`)."""
        with translated("inspect", replica_id[:12]):
            self.api.inspect_service(replica_id)  # a vanished replica is refused
            tasks = self.api.tasks(filters={"service": replica_id})
        task = inspected_task(tasks)
        if task is None:
            return ReplicaInspection(status="no task yet")
        status = task.get("Status") or {}
        exit_code = (status.get("ContainerStatus") or {}).get("ExitCode")
        state = str(status.get("State", "unknown"))
        ended = state in ("failed", "complete", "rejected", "shutdown")
        return ReplicaInspection(
            status=state,
            exit_code=int(exit_code) if exit_code is not None else None,
            health_output=str(status.get("Err") or status.get("Message") or ""),
            finished_at=docker_time(status.get("Timestamp")) if ended else None,
        )

    def output_tail(self, replica_id: str, lines: int = 20) -> str:
        return "".join(self.follow_output(replica_id, lines, follow=False))

    def claim_engine(self, cluster: str, database_id: str) -> EngineClaim:
        """The claim of this swarm for `cluster`: a Swarm config (swarm-wide, and never
        changed once made) naming the swarm's ID, the cluster's engine, and the database."""
        name = claim_volume(cluster)
        with translated("inspect_swarm"):
            swarm_id = str(self.api.inspect_swarm()["ID"])
        labels = claim_labels(cluster, swarm_id, database_id)
        try:
            with translated("create_config", name):
                self.api.create_config(name, b"berth", labels=labels)
        except DockerConflict:
            pass  # claimed before: read what it says
        with translated("inspect_config", name):
            found = [
                c
                for c in self.api.configs(filters={"name": name})
                if (c.get("Spec") or {}).get("Name") == name
            ]
        claim = EngineClaim.from_labels(
            ((found[0].get("Spec") or {}).get("Labels") or {}) if found else {}
        )
        if claim is None:
            raise NameTaken(f"Swarm config {name!r} exists without Berth's claim labels")
        return claim

    def release_claim(self, cluster: str) -> None:
        """Remove the claim of a cluster that is gone for good (tests and benchmarks)."""
        try:
            with translated("remove_config", claim_volume(cluster)):
                self.api.remove_config(claim_volume(cluster))
        except DockerRejected:
            return

    def follow_output(self, replica_id: str, lines: int, follow: bool) -> Iterator[str]:
        """A replica's output from whichever node runs it (Swarm's service logs)."""
        with translated("logs", replica_id[:12], timed=False):
            stream = self.api.service_logs(
                replica_id, stdout=True, stderr=True, tail=str(lines), follow=follow
            )
            for chunk in stream:
                yield chunk.decode(errors="replace") if isinstance(chunk, bytes) else str(chunk)
