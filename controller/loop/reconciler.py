"""The reconciler: one pass for one deployment, returning its `Outcome`.

Called by the controller loop (`controller.loop.controller`) for each name the work queue
hands out. A pass observes (the deployment's row and its containers: one SQL query, one
filtered Docker list), decides (the pure planner, the restart gate's policy and
`controller.policy.settle`), acts (the executor), observes what it changed
(`Runtime.observe_after`) and records (the `StatusWriter`), then
returns where it left the deployment and when to look again. It never touches the work
queue: requeueing is the controller's. Errors never escape: a failed pass is recorded as
`failed` with the retry the policy chose, and returned as a failed outcome.
See RECONCILIATION.md, "One pass".
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

import structlog

from controller.loop.engine import EngineHistory
from controller.loop.executor import Executor
from controller.loop.ports import FenceSource, Runtime, StorageEngine, Stores
from controller.loop.reports import not_ready_report
from controller.loop.restarts import RestartGate, Waiting, record_restarts, report_degraded
from controller.loop.rollback import Rollbacks
from controller.loop.routes import RouteKeeper
from controller.loop.sources import SourceStage
from controller.loop.status import StatusWriter, replan
from controller.loop.stops import BackgroundStops
from controller.loop.teardown import tear_down
from controller.model.errors import (
    Abandoned,
    BerthError,
    Deposed,
    DockerServerError,
    DockerUnavailable,
    HealthDeadlineExceeded,
    PermanentError,
    ReplicaVanished,
    StuckTooOften,
    TransientError,
)
from controller.model.outcome import Outcome, Result
from controller.model.phases import Phase
from controller.model.provenance import mark_recorded
from controller.model.records import DeploymentRecord
from controller.model.replicas import ObservedReplica, replica_rows
from controller.model.settings import Settings
from controller.model.spec import DeploymentSpec, parse_spec
from controller.policy import settle as policy
from controller.policy.backoff import backoff_s
from controller.policy.crashloop import RestartPolicy, load_states
from controller.policy.placement import node_moves
from controller.policy.planner import (
    Action,
    CreateReplica,
    DesiredDeployment,
    desired_deployment,
    managed_by,
    plan_deployment,
    ready_replicas,
)

log = structlog.get_logger("berth.reconciler")
ROUTE_RETRY_S = 5.0  # the proxy did not take a change: try again this soon


def summarize(actions: Sequence[Action]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for action in actions:
        counts[action.kind] += 1
    return ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()))


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        stores: Stores,
        runtime: Runtime,
        leadership: FenceSource,
        stopping: threading.Event,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        engine: EngineHistory | None = None,
        wake_builds: Callable[[], None] = lambda: None,
        routes: RouteKeeper | None = None,
        storage: StorageEngine | None = None,
        stops: BackgroundStops | None = None,
    ) -> None:
        self.settings = settings
        self.stores = stores
        self.runtime = runtime
        self.leadership = leadership
        self.cluster = settings.cluster
        self.retry = policy.RetryPolicy(
            settings.retry_base_s, settings.retry_max_s, settings.permanent_retry_s
        )
        self.routes = routes or RouteKeeper(None)
        self.executor = Executor(
            runtime,
            settings.cluster,
            settings.stop_timeout_s,
            stopping,
            self.routes,
            settings.publish_address,
            storage,
            settings.allowed_bind_paths,
            stops,
            stores.mutations.proof_key,
        )
        self.restarts = RestartGate(
            runtime,
            RestartPolicy(
                initial_backoff_s=settings.restart_backoff_initial_s,
                max_backoff_s=settings.restart_backoff_max_s,
                reset_after_s=settings.restart_backoff_reset_s,
                recreate_after=settings.recreate_after_restarts,
            ),
            settings.log_tail_lines,
            engine,
        )
        self._now = wall_clock
        self.sources = SourceStage(stores.builds, wall_clock, wake_builds)
        self.rollbacks = Rollbacks(stores.revisions)

    def reconcile(self, name: str) -> Outcome:
        """One pass for one deployment. Never raises: errors become its `failed` status."""
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(deployment=name)
        record: DeploymentRecord | None = None
        writer: StatusWriter | None = None
        try:
            fence = self.leadership.fence()
            structlog.contextvars.bind_contextvars(term=fence.term)
            record = self.stores.desired.fetch_one(name)
            containers = self._containers(name, record)
            if record is None or not record.present:
                return tear_down(
                    self.stores, self.executor, self.routes, fence, name, record, containers
                )
            assert record.spec is not None
            writer = StatusWriter.for_record(
                self.stores, fence, record, int(record.spec.get("replicas") or 0)
            )
            if policy.stuck_too_often(record):
                deadline = self.settings.stuck_deadline_s_for(record.phase)
                raise StuckTooOften(
                    f"stuck in {record.phase} {record.stuck_resumes} times although resumed; "
                    f"deadline {deadline:g}s"
                )
            outcome = self._converge(record, writer, containers)
            writer.finish()  # a new deployment's row and whatever is still unwritten
            return outcome
        except Abandoned:
            log.info("pass abandoned: daemon stopping")
            return Outcome.skipped(Result.ABANDONED, "daemon stopping")
        except Deposed as error:
            log.info("pass abandoned: not the leader", reason=str(error))
            return Outcome.skipped(Result.DEPOSED, str(error))
        except ReplicaVanished as error:  # the world changed, not the spec: plan again
            return replan(writer, error)
        except BerthError as error:
            return self._fail(name, record, writer, error)
        except Exception as error:
            log.exception("unexpected error in pass")
            outcome = self._fail(name, record, writer, TransientError(f"internal error: {error!r}"))
            return Outcome(Result.UNEXPECTED, outcome.phase, outcome.message, outcome.requeue_after)
        finally:
            structlog.contextvars.clear_contextvars()

    def _containers(
        self,
        name: str,
        record: DeploymentRecord | None,
        created: frozenset[str] = frozenset(),
        after: tuple[list[ObservedReplica], frozenset[str]] | None = None,
    ) -> list[ObservedReplica]:
        """This deployment's containers of this cluster, marked with whether Berth has a
        record of creating them (`created`: ids made by this very pass). `after`: what the
        pass observed before acting and the ids its actions changed, which the runtime may
        read alone (`Runtime.observe_after`)."""
        observed = (
            self.runtime.observe(name)
            if after is None
            else self.runtime.observe_after(name, *after)
        )
        containers = managed_by(observed, self.cluster)
        if self.executor.stops is not None:  # those stopping in the background: `removing`
            containers = self.executor.stops.mark(containers)
        if record is None:
            return containers
        return mark_recorded(
            containers,
            record.creation_records.including(created),
            self.stores.mutations.proof_key(),
        )

    # --- a present deployment -----------------------------------------------------------------
    def _converge(
        self, record: DeploymentRecord, writer: StatusWriter, containers: list[ObservedReplica]
    ) -> Outcome:
        wait_s = policy.held(record, self._now())
        if wait_s is not None:  # failed: wait out the backoff or the slow retry
            permanent = record.failure_kind == "permanent"
            message = "waiting for a spec change or the slow retry" if permanent else "backing off"
            return Outcome(
                Result.DONE, record.phase, message, requeue_after=wait_s, terminal=permanent
            )
        assert record.spec is not None
        spec = parse_spec(record.spec).with_secret_versions(record.secret_versions)
        if spec.source is not None:  # built first: wait for the build, or run its image
            staged = self.sources.stage(record, spec, writer, containers)
            if isinstance(staged, Outcome):
                return staged
            spec = staged
        spec, held = self.rollbacks.spec_to_run(record, spec)
        environment = spec.environment(self.stores.desired.secret_values(spec.secret_names))
        name, generation = record.name, record.generation
        desired = desired_deployment(spec)
        actions = plan_deployment(desired, name, containers)
        new_generation = record.observed_generation != generation
        writer.observe(generation, spec.replicas, self._now() if new_generation else None)
        previous = {} if new_generation else load_states(record.replica_restarts)
        gated = self.restarts.apply(
            actions, previous, spec.replicas, self._now().timestamp(), environment
        )
        record_restarts(writer, record, gated, new_generation)
        if gated.actions:
            if not held and (new_generation or record.phase != Phase.QUEUED):
                writer.stage(
                    Phase.QUEUED,
                    f"generation {generation}: {summarize(gated.actions)}",
                    actions=len(gated.actions),
                )
            # Replicas that became ready serve before any old one is taken out of the route.
            self.routes.serve(name, spec.routes, containers)
            created = self.executor.apply(
                writer,
                spec,
                generation,
                gated.actions,
                gated.notes,
                gated.restart_notes,
                environment,
            )
            changed = created.union(
                a.replica_id for a in gated.actions if not isinstance(a, CreateReplica)
            )
            containers = self._containers(
                name, record, frozenset(created), after=(containers, frozenset(changed))
            )
        return self._settle(
            record,
            writer,
            spec,
            desired,
            containers,
            changed=bool(gated.actions) or new_generation,
            waiting=gated.waiting,
            held=held,
            environment=environment,
        )

    def _settle(
        self,
        record: DeploymentRecord,
        writer: StatusWriter,
        spec: DeploymentSpec,
        desired: DesiredDeployment,
        containers: list[ObservedReplica],
        changed: bool,
        waiting: list[Waiting],
        held: bool = False,
        environment: Mapping[str, str] | None = None,
    ) -> Outcome:
        ready = ready_replicas(desired, containers)
        now = self._now()
        for level, move in node_moves(record.observed_replicas, containers):
            writer.note(move, level=level)
        writer.placement(replica_rows(containers))
        routed = self.routes.serve(record.name, spec.routes, containers)
        settlement = policy.settle(
            ready=ready,
            desired=desired.replicas,
            current_phase=writer.phase,
            recorded=record,
            changed=changed,
            restart_waits_s=[w.wait_s for w in waiting],
            now=now,
            health_deadline_s=self.settings.health_check_deadline_s,
            health_poll_s=policy.health_poll_s(
                self.settings.health_poll_interval_s,
                self.runtime.announces_changes,
                waited_s=(now - (record.phase_updated_at or now)).total_seconds(),
            ),
            lost=policy.lost_to_nodes(desired.spec_hash, containers),
        )
        message = f"{ready}/{desired.replicas} replicas ready"
        where = policy.where_not_ready(desired.spec_hash, containers)
        if where:
            message += f"; {where}"
        if routed.problem:
            message += f"; routes not updated: {routed.problem}"
        if settlement.phase == Phase.ACTIVE and plan_deployment(desired, record.name, containers):
            # Every slot is ready, but an old revision's container still stands (start-first:
            # its replacement became ready within this pass): take it out first.
            return Outcome.again(writer.phase, 0.0, message)
        if settlement.phase == Phase.ACTIVE:
            # A rolled-back generation is never shown active: its serving revision is.
            final = Phase.ROLLED_BACK if held else Phase.ACTIVE
            if held:
                message = (
                    f"generation {record.generation} rolled back; revision "
                    f"{record.serving_revision} serves ({message})"
                )
            if settlement.write or routed.changed or routed.problem or writer.phase != final:
                writer.ready(ready, converged=not held)
                if routed.changed:
                    writer.stage(Phase.UPDATING_ROUTES, f"{ready} replica(s) in the routes")
                writer.stage(final, message)
                if held:
                    writer.flush()
                else:  # its revision serves: recorded with the phase, in one transaction
                    self.rollbacks.serve(record, spec, writer)
            if routed.problem:
                return Outcome.again(final, ROUTE_RETRY_S, message)
            return Outcome.done(final, message)
        writer.ready(ready)
        if not held:
            crash_looping = [
                f"replica {w.replica} {w.diagnosis.summary(w.reason)}" for w in waiting
            ]
            rolled_back = self.rollbacks.roll_back_if_due(
                record, spec, writer, ready, crash_looping, now, where
            )
            if rolled_back is not None:  # the next pass converges to the serving revision
                return Outcome.again(Phase.ROLLED_BACK, 0.0, rolled_back)
        if settlement.deadline_exceeded_after_s is not None:
            raise HealthDeadlineExceeded(
                not_ready_report(
                    self.runtime,
                    desired,
                    containers,
                    settlement.deadline_exceeded_after_s,
                    environment or {},
                    self.settings.health_check_deadline_s,
                )
            )
        if settlement.phase == Phase.DEGRADED and waiting:
            message = report_degraded(writer, desired.replicas, ready, waiting, now)
        else:  # coming up, or run again off a lost node: the message says where and why
            if writer.phase != settlement.phase:  # written with the progress, just below
                writer.stage(settlement.phase, message, healthcheck=spec.healthcheck is not None)
            writer.say(message)
            writer.progress(ready, desired.replicas, ready=ready)
        assert settlement.requeue_after is not None
        return Outcome.again(settlement.phase, settlement.requeue_after, message)

    # --- a deleted deployment -----------------------------------------------------------------
    # --- a failed pass ------------------------------------------------------------------------
    def _fail(
        self,
        name: str,
        record: DeploymentRecord | None,
        writer: StatusWriter | None,
        error: BerthError,
    ) -> Outcome:
        permanent = isinstance(error, PermanentError)
        failure = policy.fail(
            str(error), permanent, record.attempts if record else 0, self._now(), self.retry
        )
        result = Result.PERMANENT if permanent else Result.TRANSIENT
        bound = log.bind(
            deployment=name, error_type=type(error).__name__, attempts=failure.attempts
        )
        if writer is None or record is None or not record.present:
            # Nothing records this failure, so it is retried whatever its kind.
            delay = backoff_s(failure.attempts, self.retry.base_s, self.retry.max_s)
            bound.warning("pass failed", error=str(error), retry_in_s=delay)
            return Outcome(result, None, str(error), delay)
        bound.warning("pass failed", error=failure.message)
        if isinstance(error, DockerUnavailable | DockerServerError):
            writer.retract_restarts(record.replica_restarts, record.restart_count)
        try:
            writer.failed(failure, type(error).__name__)
        except BerthError as write_error:
            bound.warning("could not record failure", error=str(write_error))
        return Outcome(
            result, Phase.FAILED, failure.message, failure.retry_after_s, terminal=permanent
        )
