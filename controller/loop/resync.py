"""The full resync: read everything once, find the deployments needing work, mark stuck ones.

Called by the controller loop (`controller.loop.controller`) periodically, when a watcher
(re)subscribes, and when this replica is elected. One SQL query and one Docker list call
cover every deployment; the pure planner and `controller.policy.settle` decide which need
a pass. It also sets the fleet gauges, records stuck phases in Postgres (the count
survives a leader change) and prunes the mutation log hourly. It returns the names; the
controller queues them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import structlog

from controller.loop.intents import resolve_unfinished
from controller.loop.ports import ContainerEngine, FenceSource, StateStore
from controller.loop.routes import RouteKeeper
from controller.model.containers import ObservedContainer
from controller.model.errors import BerthError, Deposed, InvalidSpec
from controller.model.phases import Phase
from controller.model.records import DeploymentRecord, Event, Fence
from controller.model.settings import Settings
from controller.model.spec import Route, parse_spec
from controller.observability.metrics import (
    DEPLOYMENTS_BY_PHASE,
    DRIFT_DETECTED,
    LAST_FULL_RESYNC,
    RECONCILE_DURATION,
    RECONCILE_PASSES,
    REPLICAS_DESIRED,
    REPLICAS_IN_BACKOFF,
    REPLICAS_READY,
    STUCK_DEPLOYMENTS,
    STUCK_DETECTED,
)
from controller.policy import settle as policy
from controller.policy.crashloop import load_states
from controller.policy.planner import (
    DesiredDeployment,
    desired_deployment,
    managed_by,
    mark_recorded,
    plan,
    ready_replicas,
)
from controller.policy.routes import members as route_members

log = structlog.get_logger("berth.resync")
MUTATION_LOG_PRUNE_EVERY_S = 3600.0


class Release(StrEnum):
    """Which failure holds a full resync releases first (see `FullResync.run`)."""

    PERMANENT = "permanent"
    ALL = "all"


@dataclass
class Fleet:
    """What one full resync saw: the gauges' values."""

    phases: dict[Phase, int] = field(default_factory=lambda: dict.fromkeys(Phase, 0))
    replicas_desired: int = 0
    replicas_ready: int = 0
    stuck: int = 0
    in_backoff: int = 0


class FullResync:
    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        docker: ContainerEngine,
        leadership: FenceSource,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        routes: RouteKeeper | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.docker = docker
        self.leadership = leadership
        self.cluster = settings.cluster
        self._now = wall_clock
        self._monotonic = monotonic
        self._last_prune = -MUTATION_LOG_PRUNE_EVERY_S
        self._resolved_term: int | None = None
        self.routes = routes or RouteKeeper(None, settings.proxy_http_addr)
        self._stuck_marks: dict[str, tuple[tuple[int, datetime | None], float]] = {}
        self._remark_after_s = settings.resync_interval_s / 2

    def run(self, release: Release | None = None) -> set[str] | None:
        """The names of every deployment needing a pass; None when not the leader.

        `release` first makes failed deployments due: all of them when the Docker engine came
        back (failures it caused must not wait out their backoff), the permanent ones when
        an image appeared (it may be what they lacked)."""
        try:
            fence = self.leadership.fence()
        except Deposed:
            return None
        started = self._monotonic()
        if self._resolved_term != fence.term:  # a new term: first, what did the last one leave?
            resolve_unfinished(self.store, self.docker, fence, self.cluster)
            self._resolved_term = fence.term
        if release is not None:
            released = self.store.release_holds(fence, permanent_only=release == Release.PERMANENT)
            if released:
                log.info("retrying failed deployments at once", count=len(released))
        records = self.store.fetch_all()
        listed_at = self._monotonic()
        listed = managed_by(self.docker.list_managed(), self.cluster)
        by_deployment: dict[str, list[ObservedContainer]] = defaultdict(list)
        for container in listed:
            assert container.deployment is not None
            by_deployment[container.deployment].append(container)
        for record in records:  # only containers Berth has a record of are its replicas
            if record.name in by_deployment:
                by_deployment[record.name] = mark_recorded(
                    by_deployment[record.name],
                    record.recorded_containers,
                    record.pending_creates,
                    record.records_since,
                )
        containers = [c for group in by_deployment.values() for c in group]

        desired: list[DesiredDeployment] = []
        routed: dict[str, tuple[list[Route], dict[str, dict[int, str]]]] = {}
        dirty: set[str] = set()
        fleet = Fleet()
        now = self._now()
        for record in records:
            if record.phase is not None:
                fleet.phases[record.phase] += 1
            fleet.in_backoff += sum(
                1
                for state in load_states(record.replica_restarts).values()
                if state.next_restart_at is not None and state.next_restart_at > now.timestamp()
            )
            if self._mark_if_stuck(fence, record, now):
                fleet.stuck += 1
                dirty.add(record.name)
            if not record.present:
                dirty.add(record.name)
                continue
            assert record.spec is not None
            if policy.held(record, now) is not None:  # failed: its pass requeued itself
                continue
            try:
                spec = parse_spec(record.spec)
            except InvalidSpec:
                dirty.add(record.name)
                continue
            mine = by_deployment.get(record.name, [])
            if spec.routes:
                routed[record.name] = (spec.routes, route_members(spec.routes, mine))
            if spec.source is not None:
                # Its containers run the built image, which only its pass knows: judged by
                # its status, and planned by its pass.
                ready = sum(1 for c in mine if c.ready)
                fleet.replicas_desired += spec.replicas
                fleet.replicas_ready += ready
                if not (
                    record.phase == Phase.ACTIVE
                    and record.observed_generation == record.generation
                    and record.ready_replicas == ready == spec.replicas
                    and len(mine) == spec.replicas
                ):
                    dirty.add(record.name)
                continue
            deployment = desired_deployment(spec)
            desired.append(deployment)
            ready = ready_replicas(deployment, by_deployment.get(record.name, ()))
            fleet.replicas_desired += spec.replicas
            fleet.replicas_ready += ready
            converged = (
                record.phase == Phase.ACTIVE
                and record.observed_generation == record.generation
                and record.ready_replicas == ready
            )
            if not converged:
                dirty.add(record.name)
        known = {record.name for record in records}
        sourced = {r.name for r in records if r.present and r.spec and r.spec.get("source")}
        planned = plan(
            desired, [c for c in containers if c.deployment not in sourced], self.cluster
        )
        skipped = known - {d.name for d in desired} - dirty  # failed, waiting: leave them be
        dirty |= set(planned) - skipped

        RECONCILE_PASSES.labels(scope="full").inc()
        RECONCILE_DURATION.labels(scope="full").observe(self._monotonic() - started)
        DRIFT_DETECTED.inc(len(dirty))
        self._publish(fleet)
        try:
            self.routes.repair(routed, listed_at)
        except BerthError as error:
            log.warning("proxy not repaired", error=str(error))
        if self._monotonic() - self._last_prune >= MUTATION_LOG_PRUNE_EVERY_S:
            self._last_prune = self._monotonic()
            self.store.prune_mutations(self.settings.mutation_log_retention_s)
        log.debug(
            "full resync", deployments=len(records), containers=len(containers), dirty=len(dirty)
        )
        return dirty

    @staticmethod
    def _publish(fleet: Fleet) -> None:
        for phase, count in fleet.phases.items():
            DEPLOYMENTS_BY_PHASE.labels(phase=str(phase)).set(count)
        REPLICAS_DESIRED.set(fleet.replicas_desired)
        REPLICAS_READY.set(fleet.replicas_ready)
        STUCK_DEPLOYMENTS.set(fleet.stuck)
        REPLICAS_IN_BACKOFF.set(fleet.in_backoff)
        LAST_FULL_RESYNC.set(time.time())

    def _mark_if_stuck(self, fence: Fence, record: DeploymentRecord, now: datetime) -> bool:
        """A moving phase unchanged past its deadline: count it in Postgres, say so, resume."""
        waited = policy.stuck_for(record, now, self.settings.stuck_deadline_s_for(record.phase))
        if waited is None:
            return False
        # Resyncs back to back (a new leader runs several) see the same stuck phase before
        # the resumed pass has written: one resume, counted once.
        seen = (record.generation, record.phase_updated_at)
        marked = self._stuck_marks.get(record.name)
        if marked and marked[0] == seen and self._monotonic() - marked[1] < self._remark_after_s:
            return True
        self._stuck_marks[record.name] = (seen, self._monotonic())
        STUCK_DETECTED.inc()
        message = policy.stuck_message(record, waited, fence.term)
        log.warning("stuck deployment", deployment=record.name, phase=record.phase, waited_s=waited)
        self.store.mark_stuck(
            fence,
            record.name,
            record.generation,
            Event(
                deployment=record.name,
                kind="error",
                level="warning",
                message=message,
                generation=record.generation,
                metadata={"phase": str(record.phase), "waited_s": waited},
            ),
        )
        return True
