"""The executor: the one place where planned actions become Docker changes.

Called by the reconciler with one deployment's actions. It walks the phases
pulling_image -> creating -> starting (skipping those with nothing to do), applies each
action through the container engine (the Docker gateway), and records every phase
transition and every action through the pass's `StatusWriter`. Each action is an
"ensure": repeating it after a crash finds its work already done (see RECONCILIATION.md,
"Idempotency").
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from controller.loop import faults
from controller.loop.ports import Runtime, StorageEngine
from controller.loop.routes import RouteKeeper
from controller.loop.status import StatusWriter
from controller.loop.stops import BackgroundStops
from controller.model.errors import Abandoned
from controller.model.names import (
    LABEL_CLUSTER,
    LABEL_DEPLOYMENT,
    LABEL_NETWORK,
    LABEL_VOLUME,
    LOOPBACK,
    network_name,
    volume_name,
)
from controller.model.phases import Phase
from controller.model.records import MutationAction
from controller.model.replicas import RunState
from controller.model.requests import replica_request
from controller.model.spec import DeploymentSpec
from controller.model.workload import check_bind_sources
from controller.observability.metrics import DRAINS_AT_LIMIT
from controller.policy.planner import (
    Action,
    CreateReplica,
    RestartReplica,
    RetireReplica,
    StartReplica,
)
from controller.policy.rollout import retirement_order

MAX_PARALLEL_STOPS = 16


@dataclass(frozen=True)
class _Start:
    replica_id: str
    name: str
    from_state: RunState
    replica: int
    reason: str


def starting_message(starts: Sequence[_Start], restart_notes: Mapping[int, str]) -> str:
    """Say why containers start: a restart names its replica, its cause and its count."""
    restarts = [
        f"restarting {restart_notes[s.replica]}" for s in starts if s.replica in restart_notes
    ]
    if restarts and len(restarts) == len(starts):
        return "; ".join(restarts)
    if restarts:
        return f"starting {len(starts)} container(s): " + "; ".join(restarts)
    return f"starting {len(starts)} container(s)"


class Executor:
    """Applies one deployment's plan; stops between actions when `stopping` is set."""

    def __init__(
        self,
        runtime: Runtime,
        cluster: str,
        stop_timeout_s: int,
        stopping: threading.Event,
        routes: RouteKeeper | None = None,
        publish_address: str = LOOPBACK,
        storage: StorageEngine | None = None,
        allowed_bind_paths: Sequence[str] = (),
        stops: BackgroundStops | None = None,
        proof_key: Callable[[], bytes] | None = None,
    ) -> None:
        self.runtime = runtime
        self.proof_key = proof_key  # the database's key: each replica's creation proof
        self.stops = stops  # None: every stop holds the pass (the unit tests' default)
        self.storage = storage
        self.allowed_bind_paths = tuple(allowed_bind_paths)
        self.cluster = cluster
        self.publish_address = publish_address
        self.stop_timeout_s = stop_timeout_s
        self.stopping = stopping
        self.routes = routes

    def _check_stopping(self) -> None:
        if self.stopping.is_set():
            raise Abandoned("daemon stopping")

    def apply(
        self,
        writer: StatusWriter,
        spec: DeploymentSpec,
        generation: int,
        actions: Sequence[Action],
        notes: Mapping[int, str] | None = None,
        restart_notes: Mapping[int, str] | None = None,
        environment: dict[str, str] | None = None,
    ) -> set[str]:
        """Apply `actions`; `notes` (by replica) explain restarts in their events, and
        `restart_notes` the restarts in the `starting` message; `environment` is the env
        with its secrets resolved (the spec's own when None). Returns the ids of the
        containers it created (recorded as Berth's with each create's outcome)."""
        notes = notes or {}
        created: set[str] = set()
        creates = [a for a in actions if isinstance(a, CreateReplica)]
        starts: list[_Start] = []
        for action in actions:
            if isinstance(action, StartReplica):
                reason = notes.get(action.replica, f"was {action.from_state}")
                starts.append(
                    _Start(
                        action.replica_id,
                        action.replica_name,
                        action.from_state,
                        action.replica,
                        reason,
                    )
                )
            elif isinstance(action, RestartReplica):
                reason = notes.get(action.replica, "unhealthy")
                starts.append(
                    _Start(
                        action.replica_id,
                        action.replica_name,
                        RunState.RUNNING,
                        action.replica,
                        reason,
                    )
                )
        if creates:
            self._check_stopping()
            assert spec.image is not None  # a source deployment's comes from its build
            # Written before a pull, which may take minutes; an image already present is
            # a moment's look, and the phase is written with the first create's intent.
            writer.stage(Phase.PULLING_IMAGE, f"ensuring image {spec.image}", image=spec.image)
            # A pull changes no container and is harmless to repeat: it is not held in a
            # fenced transaction, only preceded by a trust check.
            writer.fence.check_trust()
            outcome = self.runtime.prepare_image(spec.image, before_pull=writer.flush)
            faults.crash_point("after:image")
            writer.action(
                "image", f"image {spec.image} {outcome}", image=spec.image, outcome=outcome
            )
            writer.progress(1, 1)
            self._ensure_storage(writer, spec)
        changes = [a for a in actions if isinstance(a, RetireReplica | CreateReplica)]
        restarting = [s.replica_id for s in starts if s.from_state == RunState.RUNNING]
        early, late = retirement_order(actions, start_first=spec.rollout.strategy == "start-first")
        self._withdraw(
            writer, spec.name, restarting, [a.replica_id for a in early], spec.rollout.drain_s
        )
        if changes and (early or creates):
            # Written with the first create's intent, or now when removals come first.
            (writer.enter if early else writer.stage)(
                Phase.CREATING,
                f"removing {len(early)}, creating {len(creates)} container(s)",
                to_remove=len(early),
                to_create=len(creates),
            )
            if creates:  # emptied first for what replaces them (a port, memory): waited for
                self._remove_all(writer, early, self.grace_s(spec))
            else:  # only leaving (a scale-down, the last old replica): off the pass
                self._retire(writer, early, self.grace_s(spec))
            for changed, action in enumerate(creates, start=len(early) + 1):
                self._check_stopping()
                container_id, name = self._create(
                    writer, spec, generation, action.replica, environment
                )
                reason = notes.get(action.replica, "new")
                starts.append(_Start(container_id, name, RunState.CREATED, action.replica, reason))
                created.add(container_id)
                writer.progress(changed, len(early) + len(creates), write=False)
        if starts:
            writer.stage(  # written with the first start's intent
                Phase.STARTING,
                starting_message(starts, restart_notes or {}),
                to_start=len(starts),
            )
            for started, start in enumerate(starts, 1):
                self._check_stopping()
                restart = start.from_state == RunState.RUNNING
                kind = MutationAction.RESTART if restart else MutationAction.START
                verb = {RunState.PAUSED: "unpaused", RunState.RUNNING: "restarted"}.get(
                    start.from_state, "started"
                )
                with writer.mutation(kind, start.name, carry=True) as done:
                    if restart:
                        self.runtime.restart(start.replica_id, self.grace_s(spec))
                    else:
                        self.runtime.start(start.replica_id, start.from_state)
                    faults.crash_point(f"after:{kind}")
                    done(
                        f"{verb} {start.name} ({start.reason})",
                        container=start.name,
                        container_id=start.replica_id[:12],
                        replica=start.replica,
                    )
                writer.progress(started, len(starts), write=False)
        if late:
            self._withdraw(
                writer, spec.name, (), [a.replica_id for a in late], spec.rollout.drain_s
            )
            writer.enter(
                Phase.CREATING,
                f"removing {len(late)} container(s) of the previous revision",
                to_remove=len(late),
                to_create=0,
            )
            self._retire(writer, late, self.grace_s(spec))
        return created

    def _ensure_storage(self, writer: StatusWriter, spec: DeploymentSpec) -> None:
        """The named volumes and networks the new containers mount and join, made (and
        labelled as Berth's) before the first of them is created; binds checked against
        BERTH_ALLOWED_BIND_PATHS, which the database cannot know."""
        check_bind_sources(spec.volumes, self.allowed_bind_paths)
        if self.storage is None:
            return
        for volume in spec.volumes:
            if volume.name is None:
                continue
            name = volume_name(spec.name, volume.name, self.cluster)
            labels = {
                LABEL_CLUSTER: self.cluster,
                LABEL_DEPLOYMENT: spec.name,
                LABEL_VOLUME: volume.name,
            }
            if self.storage.ensure_volume(name, labels, volume.driver or "local"):
                writer.action("volume", f"created volume {name}", volume=name)
        for network in spec.networks:
            name = network_name(network, self.cluster)
            labels = {LABEL_CLUSTER: self.cluster, LABEL_NETWORK: network}
            if self.storage.ensure_network(name, labels):
                writer.action("network", f"created network {name}", network=name)

    def release_volumes(
        self, writer: StatusWriter, deployment: str, last_spec: DeploymentSpec | None
    ) -> None:
        """After a deleted deployment's containers are gone: remove its named volumes whose
        last spec said `retain: false`. Without a spec to say so, every volume is kept."""
        if self.storage is None or last_spec is None:
            return
        for volume in last_spec.volumes:
            if volume.name is None or volume.retained:
                continue
            name = volume_name(deployment, volume.name, self.cluster)
            outcome = self.storage.remove_volume(name, self.cluster)
            if outcome == "removed":
                writer.action("volume", f"removed volume {name} (retain: false)", volume=name)
            elif outcome != "missing":
                writer.note(f"kept volume {name}: {outcome}", level="warning", volume=name)

    def _withdraw(
        self,
        writer: StatusWriter,
        deployment: str,
        restarting: Sequence[str],
        removing: Sequence[str],
        drain_s: float,
    ) -> None:
        """Out of the routes before they stop, for whatever reason; then the drain time, so
        that requests already sent to them finish."""
        leaving = len(restarting) + len(removing)
        if not leaving or self.routes is None:
            return
        addresses = self.routes.withdraw(deployment, restarting, removing)
        if addresses and drain_s > 0:
            drained = self.routes.drain(addresses, drain_s, self.stopping)
            self._check_stopping()
            if drained.in_flight:
                DRAINS_AT_LIMIT.inc()
            message, level = drained.report(leaving, drain_s)
            writer.note(
                message,
                level=level,
                drained=leaving,
                drain_s=round(drained.waited_s, 3),
                in_flight=drained.in_flight,
            )

    def grace_s(self, spec: DeploymentSpec | None) -> int:
        """Seconds a stop waits before SIGKILL: the spec's `stop_grace_s`, else the daemon's."""
        if spec is None or spec.stop_grace_s is None:
            return self.stop_timeout_s
        return math.ceil(spec.stop_grace_s)

    def _retire(self, writer: StatusWriter, removes: Sequence[RetireReplica], grace_s: int) -> None:
        """Replicas already out of the routes, leaving for good: stopped in the background
        (`loop/stops`), so that their grace never holds the pass; in place without it."""
        if self.stops is None:
            self._remove_all(writer, removes, grace_s)
            return
        for action in removes:
            self.stops.stop(
                action.deployment,
                action.replica_id,
                functools.partial(self._remove, writer, action, grace_s),
            )

    def _remove_all(
        self, writer: StatusWriter, removes: Sequence[RetireReplica], grace_s: int
    ) -> None:
        """Remove in parallel: stops that each wait out a grace period never queue up."""
        self._check_stopping()
        if len(removes) <= 1:
            for action in removes:
                self._remove(writer, action, grace_s)
            return
        with ThreadPoolExecutor(max_workers=min(len(removes), MAX_PARALLEL_STOPS)) as pool:
            futures = [pool.submit(self._remove, writer, action, grace_s) for action in removes]
            for future in futures:
                future.result()  # the first error raises, after every stop has ended

    def _remove(self, writer: StatusWriter, action: RetireReplica, grace_s: int) -> None:
        with writer.mutation(MutationAction.REMOVE, action.replica_name) as done:
            self.runtime.retire(action.replica_id, grace_s)
            faults.crash_point("after:remove")
            done(
                f"removed {action.replica_name} ({action.reason.value})",
                removed=action.replica_id,
                container=action.replica_name,
                container_id=action.replica_id[:12],
                replica=action.replica,
                reason=action.reason.value,
            )

    def _create(
        self,
        writer: StatusWriter,
        spec: DeploymentSpec,
        generation: int,
        replica: int,
        environment: dict[str, str] | None,
    ) -> tuple[str, str]:
        request = replica_request(
            spec,
            replica,
            self.cluster,
            generation,
            self.publish_address,
            environment,
            self.proof_key() if self.proof_key is not None else None,
        )
        with writer.mutation(MutationAction.CREATE, request.name, carry=True) as done:
            container_id = self.runtime.place(request)
            faults.crash_point("after:create")
            done(
                f"created {request.name} (spec {spec.spec_hash})",
                created=container_id,
                container=request.name,
                container_id=container_id[:12],
                replica=replica,
                spec_hash=spec.spec_hash,
            )
        return container_id, request.name

    def teardown(
        self,
        writer: StatusWriter,
        removals: Sequence[RetireReplica],
        last_spec: DeploymentSpec | None = None,
    ) -> None:
        writer.enter(
            Phase.DELETING, f"removing {len(removals)} container(s)", to_remove=len(removals)
        )
        if removals:
            self._withdraw(writer, removals[0].deployment, (), [a.replica_id for a in removals], 0)
        self._retire(writer, removals, self.grace_s(last_spec))
        writer.progress(len(removals), len(removals))
