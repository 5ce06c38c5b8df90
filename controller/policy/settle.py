"""Pure decisions of a pass, beside the planner: settle, fail and back off, stuck, deadlines.

No I/O: every function takes the clock reading (`now`) as a parameter, so each is tested
with tables and hypothesis (tests/unit/test_settle.py). Called by the reconciler
(`controller.loop.reconciler`) after it has observed and acted, and by the full resync
(`controller.loop.resync`) when it looks for work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from controller.model.names import LOCAL_NODE
from controller.model.nodes import LOST_SUFFIX
from controller.model.phases import MOVING_PHASES, Phase
from controller.model.records import DeploymentRecord
from controller.model.replicas import ObservedReplica
from controller.policy.backoff import backoff_s

# A phase found stuck this many times (each time resumed) fails the pass.
STUCK_RESUMES_BEFORE_FAILING = 3
# Without events (a swarm), a replica coming up is looked at again this soon at first.
UNANNOUNCED_POLL_S = 0.25


def health_poll_s(interval_s: float, announced: bool, waited_s: float) -> float:
    """How soon a pass waiting for replicas looks again. With a runtime whose events wake
    the loop (one engine), BERTH_HEALTH_POLL_INTERVAL_S, the backstop. Without (Swarm has no
    events for tasks on other nodes), a quarter of the time waited so far, from 0.25 s up to
    the interval: a replica up within a second is seen within a quarter second, and a slow
    one costs a few looks, not four a second."""
    if announced:
        return interval_s
    return min(interval_s, max(UNANNOUNCED_POLL_S, waited_s / 4))


@dataclass(frozen=True)
class RetryPolicy:
    """A transient failure waits backoff_s(attempt, base_s, max_s) before the next pass; a
    permanent one `permanent_s`, unless something relevant changes first."""

    base_s: float = 1.0
    max_s: float = 300.0
    permanent_s: float = 600.0


# --- before acting: is this deployment's work on hold? ---------------------------------------
def held(record: DeploymentRecord, now: datetime) -> float | None:
    """Seconds left before a failed current generation is tried again, or None.

    A transient failure waits out its backoff; a permanent one (the spec's own fault) its
    slow retry, unless the spec changes (a new generation) or the hold is released (the
    Docker engine came back)."""
    if (
        record.failure_kind is None
        or record.observed_generation != record.generation
        or record.next_attempt_at is None
        or record.next_attempt_at <= now
    ):
        return None
    return (record.next_attempt_at - now).total_seconds()


def stuck_for(record: DeploymentRecord, now: datetime, deadline_s: float) -> float | None:
    """Seconds a moving phase has gone without change, if past its deadline; else None."""
    if record.phase not in MOVING_PHASES or record.phase_updated_at is None:
        return None
    if record.phase == Phase.QUEUED and record.build_queued:
        return None  # waiting its turn in the build queue, which may be long: not stuck
    waited = (now - record.phase_updated_at).total_seconds()
    return waited if waited >= deadline_s else None


def stuck_too_often(record: DeploymentRecord) -> bool:
    return record.stuck_resumes >= STUCK_RESUMES_BEFORE_FAILING


def stuck_message(record: DeploymentRecord, waited_s: float, current_term: int) -> str:
    owner = f" (written by term {record.leader_term})" if record.leader_term != current_term else ""
    return (
        f"stuck in {record.phase} for {waited_s:.0f}s{owner}; "
        f"resuming (time {record.stuck_resumes + 1} of {STUCK_RESUMES_BEFORE_FAILING})"
    )


# --- after acting: where does the deployment stand? ------------------------------------------
@dataclass(frozen=True)
class Settlement:
    """Where a pass leaves a deployment once its actions are done.

    `write` is false when nothing changed since the last write (a converged deployment's
    pass writes nothing); `requeue_after` is None when no look is due before an event.
    """

    phase: Phase
    write: bool
    requeue_after: float | None = None
    deadline_exceeded_after_s: float | None = None


def settle(
    *,
    ready: int,
    desired: int,
    current_phase: Phase,
    recorded: DeploymentRecord,
    changed: bool,
    restart_waits_s: Sequence[float],
    now: datetime,
    health_deadline_s: float,
    health_poll_s: float,
    lost: int = 0,
) -> Settlement:
    """Active when every replica is ready; degraded while replicas wait out a restart
    backoff, or are run again because their node was lost (`lost`: no fault of the app, no
    deadline); health_check (looked at again every `health_poll_s`) while replicas come up,
    until `health_deadline_s` in that phase has passed."""
    if ready >= desired:
        write = changed or recorded.phase != Phase.ACTIVE or recorded.ready_replicas != ready
        return Settlement(Phase.ACTIVE, write)
    if restart_waits_s:
        return Settlement(Phase.DEGRADED, True, min(restart_waits_s))
    if lost:
        return Settlement(Phase.DEGRADED, True, health_poll_s)
    if current_phase == Phase.HEALTH_CHECK and recorded.phase_updated_at is not None:
        waited = (now - recorded.phase_updated_at).total_seconds()
        if waited > health_deadline_s:
            return Settlement(Phase.FAILED, True, deadline_exceeded_after_s=waited)
    return Settlement(Phase.HEALTH_CHECK, True, health_poll_s)


# --- a failed pass --------------------------------------------------------------------------
@dataclass(frozen=True)
class Failure:
    """How a failed pass is recorded and when it is tried again."""

    kind: str  # "transient" | "permanent": deployment_status.failure_kind
    attempts: int
    retry_after_s: float | None  # None: terminal until the spec changes
    next_attempt_at: datetime | None
    message: str


def fail(
    error_message: str, permanent: bool, previous_attempts: int, now: datetime, retry: RetryPolicy
) -> Failure:
    attempts = previous_attempts + 1
    if permanent:
        retry_at = now + timedelta(seconds=retry.permanent_s)
        return Failure(
            "permanent",
            attempts,
            retry.permanent_s,
            retry_at,
            f"{error_message} (caused by the spec: retried when it changes, when the "
            f"Docker engine comes back, or at {clock_time(retry_at)})",
        )
    delay = backoff_s(attempts, retry.base_s, retry.max_s)
    return Failure(
        "transient",
        attempts,
        delay,
        now + timedelta(seconds=delay),
        f"{error_message} (attempt {attempts}; retrying in {delay:g}s)",
    )


def clock_time(moment: datetime) -> str:
    """An absolute time for a status message, e.g. 12:03:04Z: true whenever it is read."""
    return moment.astimezone(UTC).strftime("%H:%M:%SZ")


def lost_to_nodes(spec_hash: str, replicas: Sequence[ObservedReplica]) -> int:
    """The current revision's unready replicas whose node was lost (on it, or run again
    elsewhere and not ready yet)."""
    return sum(
        1
        for r in replicas
        if r.spec_hash == spec_hash
        and not r.ready
        and (r.node.endswith(LOST_SUFFIX) or r.moved_from)
    )


def where_not_ready(spec_hash: str, replicas: Sequence[ObservedReplica], most: int = 5) -> str:
    """Where the current revision's unready replicas are, on a runtime with nodes (a lost
    node named as such): "replica 1 restarting on node-2 (lost)". Empty on one engine."""
    waiting = sorted(
        (r for r in replicas if r.spec_hash == spec_hash and not r.ready and r.node != LOCAL_NODE),
        key=lambda r: (r.replica if r.replica is not None else -1, r.id),
    )
    shown = [
        f"replica {r.replica} {r.state} on {r.node}" + (f" ({r.note})" if r.note else "")
        for r in waiting[:most]
    ]
    if len(waiting) > most:
        shown.append(f"{len(waiting) - most} more")
    return ", ".join(shown)
