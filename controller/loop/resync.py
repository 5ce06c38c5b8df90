"""The full resync: read everything once, find the deployments needing work, mark stuck ones.

Called by the controller loop (`controller.loop.controller`) periodically, when a watcher
(re)subscribes, and when this replica is elected. One SQL query and one runtime list call
cover every deployment; the pure `controller.policy.resync.survey` decides which need a
pass. It also sets the fleet gauges, records stuck phases in Postgres (the count
survives a leader change) and prunes the mutation log hourly. It returns the names; the
controller queues them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum

import structlog

from controller.loop.intents import resolve_unfinished
from controller.loop.nodes import NodeKeeper
from controller.loop.ports import FenceSource, Runtime, Stores
from controller.loop.routes import RouteKeeper
from controller.loop.stops import BackgroundStops
from controller.model.errors import BerthError, Deposed
from controller.model.provenance import lost_records, mark_recorded
from controller.model.records import DeploymentRecord, Event, Fence
from controller.model.replicas import ObservedReplica
from controller.model.settings import Settings
from controller.observability.metrics import (
    CREATION_RECORDS_RESTORED,
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
from controller.policy.planner import managed_by
from controller.policy.resync import Fleet, survey

log = structlog.get_logger("berth.resync")
MUTATION_LOG_PRUNE_EVERY_S = 3600.0


class Release(StrEnum):
    """Which failure holds a full resync releases first (see `FullResync.run`)."""

    PERMANENT = "permanent"
    ALL = "all"


class FullResync:
    def __init__(
        self,
        settings: Settings,
        stores: Stores,
        runtime: Runtime,
        leadership: FenceSource,
        routes: RouteKeeper | None = None,
        nodes: NodeKeeper | None = None,
        stops: BackgroundStops | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.stores = stores
        self.runtime = runtime
        self.leadership = leadership
        self.cluster = settings.cluster
        self._now = wall_clock
        self._monotonic = monotonic
        self._last_prune = -MUTATION_LOG_PRUNE_EVERY_S
        self._resolved_term: int | None = None
        self.routes = routes or RouteKeeper(None)
        self.nodes = nodes
        self.stops = stops
        self._stuck_marks: dict[str, tuple[tuple[int, datetime | None], float]] = {}
        self._remark_after_s = settings.resync_interval_s / 2

    def elected(self) -> None:
        """A new election: its first resync resolves earlier terms' intents, even when its
        term has the number of one this node held before (a promoted standby that never
        received the old primary's last claim grants that number again)."""
        self._resolved_term = None

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
            resolve_unfinished(self.stores.mutations, self.runtime, fence, self.cluster)
            self._resolved_term = fence.term
        if release is not None:
            released = self.stores.status.release_holds(
                fence, permanent_only=release == Release.PERMANENT
            )
            if released:
                log.info("retrying failed deployments at once", count=len(released))
        records = self.stores.desired.fetch_all()
        listed_at = self._monotonic()
        by_deployment: dict[str, list[ObservedReplica]] = defaultdict(list)
        observed = managed_by(self.runtime.observe(), self.cluster)
        if self.stops is not None:  # those stopping in the background: `removing`
            observed = self.stops.mark(observed)
        for replica in observed:
            assert replica.deployment is not None
            by_deployment[replica.deployment].append(replica)
        if self.nodes is not None:
            try:
                self.nodes.keep(fence, observed)
            except Deposed:
                return None
            except BerthError as error:
                log.warning("nodes not recorded", error=str(error))
        key = self.stores.mutations.proof_key()
        for record in records:  # only replicas Berth has a record (or proof) of are its own
            if record.name in by_deployment:
                seen = by_deployment[record.name]
                lost = lost_records(seen, record.creation_records, key)
                if lost:
                    self._record_again(fence, record.name, lost)
                by_deployment[record.name] = mark_recorded(seen, record.creation_records, key)
        now = self._now()
        stuck = {record.name for record in records if self._mark_if_stuck(fence, record, now)}
        found = survey(records, by_deployment, self.cluster, now, stuck)
        dirty = found.dirty

        RECONCILE_PASSES.labels(scope="full").inc()
        RECONCILE_DURATION.labels(scope="full").observe(self._monotonic() - started)
        DRIFT_DETECTED.inc(len(dirty))
        self._publish(found.fleet)
        try:
            self.routes.repair(found.routed, listed_at)
        except BerthError as error:
            log.warning("proxy not repaired", error=str(error))
        if self._monotonic() - self._last_prune >= MUTATION_LOG_PRUNE_EVERY_S:
            self._last_prune = self._monotonic()
            self.stores.mutations.prune_mutations(self.settings.mutation_log_retention_s)
        log.debug(
            "full resync",
            deployments=len(records),
            replicas=sum(len(group) for group in by_deployment.values()),
            dirty=len(dirty),
        )
        return dirty

    def _record_again(self, fence: Fence, deployment: str, lost: list[ObservedReplica]) -> None:
        """Berth's own replicas whose creation records the database lost (the old
        primary's last transactions, an older backup): their proof holds, so the records
        are written again, with an event, and they are kept, not replaced."""
        names = sorted(replica.name for replica in lost)
        message = (
            f"creation record of {', '.join(names)} written again: the database had lost it "
            "(a failover to a standby behind the old primary, or a restore) and the "
            "replica's proof holds"
        )
        log.warning("creation records written again", deployment=deployment, replicas=names)
        self.stores.mutations.record_again(
            fence,
            deployment,
            [(replica.id, replica.name) for replica in lost],
            Event(
                deployment=deployment,
                kind="note",
                level="warning",
                message=message,
                metadata={"containers": names, "term": fence.term},
            ),
        )
        CREATION_RECORDS_RESTORED.inc(len(lost))

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
        self.stores.status.mark_stuck(
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
