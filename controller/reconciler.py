"""The reconciler: one pass for one deployment, and the full resync that finds work.

Called by the daemon: worker threads call `reconcile(name)` for each name the work queue
hands out; the scheduler calls `full_resync()` periodically and after reconnects. A pass
reads the deployment's row and its containers (one SQL query, one filtered Docker list),
plans with the pure planner, hands the actions to the executor, then settles the status:
`active` when every replica is ready, `health_check` while waiting (with a deadline),
`failed` on error. Transient errors are retried with exponential backoff stored in the
status row; permanent ones wait for the spec to change. See RECONCILIATION.md.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from controller.crashloop import RestartPolicy, dump_states, load_states
from controller.database import Database
from controller.docker_gateway import DockerGateway
from controller.errors import BerthError, Deposed, InvalidSpec, PermanentError, TransientError
from controller.executor import Abandoned, Executor, PhaseTracker
from controller.leadership import Leadership
from controller.metrics import (
    CONTAINER_RESTARTS,
    DEPLOYMENTS_BY_PHASE,
    DRIFT_DETECTED,
    LAST_FULL_RESYNC,
    PHASES,
    RECONCILE_DURATION,
    RECONCILE_ERRORS,
    RECONCILE_PASSES,
    REPLICAS_DESIRED,
    REPLICAS_IN_BACKOFF,
    REPLICAS_READY,
    STUCK_DEPLOYMENTS,
    STUCK_DETECTED,
)
from controller.planner import (
    DesiredDeployment,
    ObservedContainer,
    RemoveContainer,
    managed_by,
    plan,
    plan_deployment,
    ready_replicas,
)
from controller.records import DeploymentRecord, Event, Fence, StatusWrite
from controller.restarts import Gated, RestartGate, Waiting
from controller.settings import Settings
from controller.spec import DeploymentSpec, parse_spec
from controller.workqueue import WorkQueue

log = structlog.get_logger("berth.reconciler")


class HealthDeadlineExceeded(TransientError):
    """Replicas did not become ready within the health-check deadline."""


class StuckTooOften(TransientError):
    """A phase kept making no progress although it was resumed."""


# Phases a pass moves through on its own; `health_check` has its own deadline, `active`
# and `failed` are at rest.
MOVING_PHASES = frozenset({"queued", "pulling_image", "creating", "starting", "deleting"})
STUCK_RESUMES_BEFORE_FAILING = 3
MUTATION_LOG_PRUNE_EVERY_S = 3600.0


def _summarize(actions: list[object]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for action in actions:
        counts[getattr(action, "kind", "?")] += 1
    return ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()))


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        docker: DockerGateway,
        queue: WorkQueue,
        leadership: Leadership,
        stopping: threading.Event,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.database = database
        self.docker = docker
        self.queue = queue
        self.leadership = leadership
        self.cluster = settings.cluster
        self.executor = Executor(docker, settings.cluster, settings.stop_timeout_s, stopping)
        self.restarts = RestartGate(
            docker,
            RestartPolicy(
                initial_backoff_s=settings.restart_backoff_initial_s,
                max_backoff_s=settings.restart_backoff_max_s,
                reset_after_s=settings.restart_backoff_reset_s,
                recreate_after=settings.recreate_after_restarts,
            ),
            settings.log_tail_lines,
        )
        self._now = wall_clock
        self._monotonic = monotonic
        self._stuck: dict[tuple[str, int], int] = {}
        self._last_prune = -MUTATION_LOG_PRUNE_EVERY_S

    # --- full resync ------------------------------------------------------------------
    def full_resync(self) -> set[str]:
        """Read everything (one query, one list call), enqueue each deployment needing work.

        Only the leader resyncs; a follower returns at once (Deposed is not an error here).
        """
        try:
            fence = self.leadership.fence()
        except Deposed:
            return set()
        started = self._monotonic()
        records = self.database.fetch_all()
        containers = managed_by(self.docker.list_managed(), self.cluster)
        by_deployment: dict[str, list[ObservedContainer]] = defaultdict(list)
        for container in containers:
            assert container.deployment is not None
            by_deployment[container.deployment].append(container)

        desired: list[DesiredDeployment] = []
        dirty: set[str] = set()
        phases: dict[str, int] = dict.fromkeys(PHASES, 0)
        replicas_desired = replicas_ready = stuck = in_backoff = 0
        now = self._now()
        for record in records:
            if record.phase in phases:
                phases[record.phase] += 1
            in_backoff += sum(
                1
                for state in load_states(record.replica_restarts).values()
                if state.next_restart_at is not None and state.next_restart_at > now.timestamp()
            )
            if self._is_stuck(fence, record, now):
                stuck += 1
                dirty.add(record.name)
            if not record.present:
                dirty.add(record.name)
                continue
            assert record.spec is not None
            if self._waiting_for_spec_change(record) or self._backing_off(record, now):
                continue
            try:
                spec = parse_spec(record.spec)
            except InvalidSpec:
                dirty.add(record.name)
                continue
            deployment = DesiredDeployment(record.name, spec.replicas, spec.spec_hash)
            desired.append(deployment)
            ready = ready_replicas(deployment, by_deployment.get(record.name, ()))
            replicas_desired += spec.replicas
            replicas_ready += ready
            converged = (
                record.phase == "active"
                and record.observed_generation == record.generation
                and record.ready_replicas == ready
            )
            if not converged:
                dirty.add(record.name)
        known = {record.name for record in records}
        planned = plan(desired, containers, self.cluster)
        skipped = known - {d.name for d in desired} - dirty  # failed, waiting: leave them be
        dirty |= set(planned) - skipped
        for name in sorted(dirty):
            self.queue.add(name)

        RECONCILE_PASSES.labels(scope="full").inc()
        RECONCILE_DURATION.labels(scope="full").observe(self._monotonic() - started)
        DRIFT_DETECTED.inc(len(dirty))
        for phase, count in phases.items():
            DEPLOYMENTS_BY_PHASE.labels(phase=phase).set(count)
        REPLICAS_DESIRED.set(replicas_desired)
        REPLICAS_READY.set(replicas_ready)
        STUCK_DEPLOYMENTS.set(stuck)
        REPLICAS_IN_BACKOFF.set(in_backoff)
        LAST_FULL_RESYNC.set(time.time())
        if self._monotonic() - self._last_prune >= MUTATION_LOG_PRUNE_EVERY_S:
            self._last_prune = self._monotonic()
            self.database.prune_mutations(self.settings.mutation_log_retention_s)
        log.debug(
            "full resync", deployments=len(records), containers=len(containers), dirty=len(dirty)
        )
        return dirty

    def _is_stuck(self, fence: Fence, record: DeploymentRecord, now: datetime) -> bool:
        """A moving phase that has not changed for its deadline: record it, resume it."""
        if record.phase not in MOVING_PHASES or record.phase_updated_at is None:
            return False
        waited = (now - record.phase_updated_at).total_seconds()
        if waited < self.settings.stuck_deadline_s_for(record.phase):
            return False
        key = (record.name, record.generation)
        self._stuck[key] = self._stuck.get(key, 0) + 1
        STUCK_DETECTED.inc()
        owner = (
            f" (written by term {record.leader_term})" if record.leader_term != fence.term else ""
        )
        message = (
            f"stuck in {record.phase} for {waited:.0f}s{owner}; "
            f"resuming (time {self._stuck[key]} of {STUCK_RESUMES_BEFORE_FAILING})"
        )
        log.warning("stuck deployment", deployment=record.name, phase=record.phase, waited_s=waited)
        self.database.record(
            fence,
            None,
            [
                Event(
                    deployment=record.name,
                    kind="error",
                    level="warning",
                    message=message,
                    generation=record.generation,
                    metadata={"phase": record.phase, "waited_s": waited},
                )
            ],
        )
        return True

    @staticmethod
    def _waiting_for_spec_change(record: DeploymentRecord) -> bool:
        return (
            record.failure_kind == "permanent" and record.observed_generation == record.generation
        )

    @staticmethod
    def _backing_off(record: DeploymentRecord, now: datetime) -> bool:
        return (
            record.failure_kind == "transient"
            and record.observed_generation == record.generation
            and record.next_attempt_at is not None
            and record.next_attempt_at > now
        )

    # --- one deployment -----------------------------------------------------------------
    def reconcile(self, name: str) -> None:
        """One pass for one deployment. Never raises: errors become its `failed` status."""
        started = self._monotonic()
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(deployment=name)
        record: DeploymentRecord | None = None
        tracker: PhaseTracker | None = None
        try:
            fence = self.leadership.fence()
            structlog.contextvars.bind_contextvars(term=fence.term)
            record = self.database.fetch_one(name)
            containers = managed_by(self.docker.list_managed(name), self.cluster)
            if record is None or not record.present:
                self._teardown(fence, name, record, containers)
                return
            tracker = self._tracker(fence, record)
            stuck = self._stuck.get((name, record.generation), 0)
            if stuck >= STUCK_RESUMES_BEFORE_FAILING:
                self._stuck.pop((name, record.generation), None)
                deadline = self.settings.stuck_deadline_s_for(record.phase or "")
                raise StuckTooOften(
                    f"stuck in {record.phase} {stuck} times although resumed; "
                    f"deadline {deadline:g}s"
                )
            self._converge(record, tracker, containers)
            if tracker.phase in ("active", "failed"):
                self._stuck.pop((name, record.generation), None)
        except Abandoned:
            log.info("pass abandoned: daemon stopping")
        except Deposed as error:
            log.info("pass abandoned: not the leader", reason=str(error))
        except BerthError as error:
            self._fail(name, record, tracker, error)
        except Exception as error:
            log.exception("unexpected error in pass")
            RECONCILE_ERRORS.labels(kind="unexpected").inc()
            self._fail(name, record, tracker, TransientError(f"internal error: {error!r}"))
        finally:
            structlog.contextvars.clear_contextvars()
            RECONCILE_PASSES.labels(scope="deployment").inc()
            RECONCILE_DURATION.labels(scope="deployment").observe(self._monotonic() - started)

    def _tracker(self, fence: Fence, record: DeploymentRecord) -> PhaseTracker:
        assert record.spec is not None
        status = StatusWrite(
            name=record.name,
            phase=record.phase or "queued",
            phase_progress=0,
            observed_generation=record.observed_generation,
            desired_replicas=int(record.spec.get("replicas") or 0),
            ready_replicas=record.ready_replicas,
            failure_kind=record.failure_kind,
            attempts=record.attempts,
            next_attempt_at=record.next_attempt_at,
        )
        tracker = PhaseTracker(self.database, fence, status)
        if record.phase is None:
            tracker.create_row = True
            tracker.pending_events.append(
                Event(
                    deployment=record.name,
                    kind="phase",
                    phase_to="queued",
                    generation=record.generation,
                    message=f"new deployment (generation {record.generation})",
                )
            )
        return tracker

    def _converge(
        self, record: DeploymentRecord, tracker: PhaseTracker, containers: list[ObservedContainer]
    ) -> None:
        name, generation = record.name, record.generation
        self._converge_unflushed(record, tracker, containers, name, generation)
        if tracker.pending_events or tracker.create_row:
            tracker.flush()  # a new deployment's row and whatever is still unwritten
        # (on an error, _fail's write carries them instead)

    def _converge_unflushed(
        self,
        record: DeploymentRecord,
        tracker: PhaseTracker,
        containers: list[ObservedContainer],
        name: str,
        generation: int,
    ) -> None:
        if self._waiting_for_spec_change(record):
            return
        if self._backing_off(record, self._now()):
            assert record.next_attempt_at is not None
            self.queue.add_after(name, (record.next_attempt_at - self._now()).total_seconds())
            return
        assert record.spec is not None
        spec = parse_spec(record.spec)
        desired = DesiredDeployment(name, spec.replicas, spec.spec_hash)
        actions = plan_deployment(desired, name, containers)
        new_generation = record.observed_generation != generation
        tracker.update(observed_generation=generation, desired_replicas=spec.replicas)
        previous = {} if new_generation else load_states(record.replica_restarts)
        gated = self.restarts.apply(actions, previous, spec.replicas, self._now().timestamp())
        self._record_restarts(tracker, record, gated, new_generation)
        actions = gated.actions
        if actions:
            if new_generation or record.phase != "queued":
                tracker.stage(
                    "queued",
                    f"generation {generation}: {_summarize(list(actions))}",
                    actions=len(actions),
                )
            self.executor.apply(tracker, spec, generation, actions, gated.notes)
            containers = managed_by(self.docker.list_managed(name), self.cluster)
        self._settle(
            record,
            tracker,
            spec,
            desired,
            containers,
            changed=bool(actions) or new_generation,
            waiting=gated.waiting,
        )

    def _record_restarts(
        self, tracker: PhaseTracker, record: DeploymentRecord, gated: Gated, new_generation: bool
    ) -> None:
        """Keep the per-replica restart state and count; one warning event per restart."""
        count = (0 if new_generation else record.restart_count) + len(gated.restarted)
        tracker.update(replica_restarts=dump_states(gated.states), restart_count=count)
        for restart in gated.restarted:
            CONTAINER_RESTARTS.labels(reason=restart.reason).inc()
            verb = "recreating" if restart.recreated else "restarting"
            tracker.note(
                f"replica {restart.replica} {restart.diagnosis.summary(restart.reason)}; "
                f"{verb} {restart.container_name} (restart {restart.restarts}; "
                f"the next would wait {restart.next_backoff_s:g}s)",
                level="warning",
                replica=restart.replica,
                reason=restart.reason,
                restarts=restart.restarts,
                exit_code=restart.diagnosis.exit_code,
                oom_killed=restart.diagnosis.oom_killed,
                health_output=restart.diagnosis.health_output,
                log_tail=restart.diagnosis.log_tail,
            )

    def _settle(
        self,
        record: DeploymentRecord,
        tracker: PhaseTracker,
        spec: DeploymentSpec,
        desired: DesiredDeployment,
        containers: list[ObservedContainer],
        changed: bool,
        waiting: list[Waiting],
    ) -> None:
        ready = ready_replicas(desired, containers)
        if ready >= desired.replicas:
            if changed or record.phase != "active" or record.ready_replicas != ready:
                tracker.update(ready_replicas=ready, attempts=0)
                tracker.enter("active", f"{ready}/{desired.replicas} replicas ready")
            return
        tracker.update(ready_replicas=ready)
        if waiting:
            self._degraded(tracker, desired, ready, waiting)
            return
        if tracker.phase == "health_check" and record.phase_updated_at is not None:
            waited = self._now() - record.phase_updated_at
            if waited > timedelta(seconds=self.settings.health_check_deadline_s):
                raise HealthDeadlineExceeded(self._not_ready_report(desired, containers, waited))
        if tracker.phase != "health_check":
            tracker.enter(
                "health_check",
                f"{ready}/{desired.replicas} replicas ready",
                healthcheck=spec.healthcheck is not None,
            )
        tracker.progress(ready, desired.replicas, ready=ready)
        self.queue.add_after(record.name, self.settings.health_poll_interval_s)

    def _degraded(
        self, tracker: PhaseTracker, desired: DesiredDeployment, ready: int, waiting: list[Waiting]
    ) -> None:
        """Replicas waiting out a restart backoff: say which, why, and until when."""
        details = "; ".join(
            f"replica {w.replica} ({w.container_name}) {w.diagnosis.summary(w.reason)}, "
            f"restarted {w.restarts}x, next restart in {w.wait_s:.0f}s"
            for w in waiting
        )
        message = f"crash-looping: {ready}/{desired.replicas} ready; {details}"
        tracker.enter(
            "degraded",
            message,
            crash_looping=[w.replica for w in waiting],
            next_restart_in_s=round(min(w.wait_s for w in waiting), 1),
        )
        tracker.progress(ready, desired.replicas)
        self.queue.add_after(desired.name, min(w.wait_s for w in waiting))

    def _not_ready_report(
        self, desired: DesiredDeployment, containers: list[ObservedContainer], waited: timedelta
    ) -> str:
        problems = []
        for container in containers:
            if container.ready or container.spec_hash != desired.spec_hash:
                continue
            detail = f"{container.name}: {container.state}, health {container.health}"
            try:
                state = self.docker.inspect_state(container.id)
                log_entries = (state.get("Health") or {}).get("Log") or []
                if log_entries:
                    detail += (
                        f", last check: {str(log_entries[-1].get('Output', '')).strip()[:200]}"
                    )
                if state.get("ExitCode"):
                    detail += f", exit code {state['ExitCode']}"
            except BerthError:
                pass
            problems.append(detail)
        return (
            f"replicas not ready after {waited.total_seconds():.0f}s "
            f"(deadline {self.settings.health_check_deadline_s:g}s): " + "; ".join(problems)
        )

    def _teardown(
        self,
        fence: Fence,
        name: str,
        record: DeploymentRecord | None,
        containers: list[ObservedContainer],
    ) -> None:
        removals = [
            a for a in plan_deployment(None, name, containers) if isinstance(a, RemoveContainer)
        ]
        status = StatusWrite(
            name=name,
            phase=(record.phase if record else None) or "queued",
            phase_progress=0,
            observed_generation=record.observed_generation if record else 0,
            desired_replicas=0,
            ready_replicas=0,
        )
        tracker = PhaseTracker(self.database, fence, status)
        if removals:
            self.executor.teardown(tracker, removals)
        if record is not None:
            self.database.forget(
                fence,
                name,
                [
                    *tracker.pending_events,  # the last removal's event rides along
                    Event(
                        deployment=name,
                        kind="phase",
                        phase_from=tracker.phase,
                        phase_to=None,
                        message=f"deleted: {len(removals)} container(s) removed",
                    ),
                ],
            )

    def _fail(
        self,
        name: str,
        record: DeploymentRecord | None,
        tracker: PhaseTracker | None,
        error: BerthError,
    ) -> None:
        transient = not isinstance(error, PermanentError)
        kind = "transient" if transient else "permanent"
        RECONCILE_ERRORS.labels(kind=kind).inc()
        attempts = (record.attempts if record else 0) + 1
        delay = self.queue.backoff_s(attempts)
        bound = log.bind(deployment=name, error_type=type(error).__name__, attempts=attempts)
        if tracker is None or record is None or not record.present:
            bound.warning("pass failed", error=str(error), retry_in_s=delay)
            self.queue.add_after(name, delay)
            return
        message = str(error)
        if transient:
            message += f" (attempt {attempts}; retrying in {delay:g}s)"
        else:
            message += " (permanent: not retried until the deployment's spec changes)"
        bound.warning("pass failed", error=message)
        try:
            failed_phase = tracker.phase
            tracker.update(
                failure_kind=kind,
                attempts=attempts,
                next_attempt_at=self._now() + timedelta(seconds=delay) if transient else None,
            )
            tracker.enter(
                "failed", message, failed_in=failed_phase, error_type=type(error).__name__
            )
        except BerthError as write_error:
            bound.warning("could not record failure", error=str(write_error))
        if transient:
            self.queue.add_after(name, delay)
