"""Restart policy per replica, after Kubernetes' CrashLoopBackOff. Pure: `now` is passed in.

Called by the restart gate (`controller.loop.restarts`) for every planned restart (a
container that exited while it should run, or runs but is unhealthy). The first restart of
a replica is immediate; the n-th waits `initial * 2^(n-2)` seconds after the previous one,
capped at `max`. A replica that went `reset_after` seconds without needing a restart
starts over. After `recreate_after` restarts in a row the container is recreated instead
(a fresh filesystem and configuration), with the backoff still growing.

The state lives in `deployment_status.replica_restarts` (JSON keyed by replica index) so a
new leader continues the count where the old one left it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from controller.policy.backoff import backoff_s


@dataclass(frozen=True)
class RestartPolicy:
    initial_backoff_s: float = 10.0
    max_backoff_s: float = 300.0
    reset_after_s: float = 600.0
    recreate_after: int = 3

    def backoff_s(self, restarts: int) -> float:
        """Delay before restart number `restarts` (1-based); the first is immediate."""
        if restarts <= 1:
            return 0.0
        return backoff_s(restarts - 1, self.initial_backoff_s, self.max_backoff_s)


@dataclass(frozen=True)
class ReplicaRestarts:
    """What Berth remembers of one replica's restarts (unix seconds)."""

    restarts: int = 0
    last_restart_at: float | None = None
    next_restart_at: float | None = None
    last_reason: str | None = None
    last_exit_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplicaRestarts:
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        return cls(**known)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    wait_s: float
    recreate: bool
    state: ReplicaRestarts


def decide(
    state: ReplicaRestarts,
    now: float,
    policy: RestartPolicy,
    reason: str,
    exit_code: int | None = None,
) -> Decision:
    """May this replica be restarted now? If so, the state after the restart."""
    restarts = state.restarts
    if state.last_restart_at is not None and now - state.last_restart_at >= policy.reset_after_s:
        restarts = 0
    upcoming = restarts + 1
    earliest = now
    if state.last_restart_at is not None and upcoming > 1:
        earliest = state.last_restart_at + policy.backoff_s(upcoming)
    observed = replace(state, last_reason=reason, last_exit_code=exit_code)
    if now < earliest:
        return Decision(False, earliest - now, False, replace(observed, next_restart_at=earliest))
    after = ReplicaRestarts(
        restarts=upcoming,
        last_restart_at=now,
        next_restart_at=None,
        last_reason=reason,
        last_exit_code=exit_code,
    )
    return Decision(True, 0.0, upcoming > policy.recreate_after, after)


def load_states(data: dict[str, Any] | None) -> dict[int, ReplicaRestarts]:
    return {int(key): ReplicaRestarts.from_json(value) for key, value in (data or {}).items()}


def dump_states(states: dict[int, ReplicaRestarts]) -> dict[str, Any]:
    return {str(replica): state.to_json() for replica, state in sorted(states.items())}
