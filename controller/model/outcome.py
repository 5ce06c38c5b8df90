"""The outcome of one reconcile pass, as a value (controller-runtime's `Result`).

Returned by `controller.loop.reconciler.Reconciler.reconcile`; read by the controller
loop (`controller.loop.controller`), the only place that requeues and counts passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from controller.model.phases import Phase


class Result(StrEnum):
    """What became of a pass; `berth_reconcile_errors_total{kind}` counts the failures."""

    DONE = "done"  # the pass ran; `phase` is where it left the deployment
    TRANSIENT = "transient"  # failed; retried after `requeue_after`
    PERMANENT = "permanent"  # failed; terminal until something relevant changes
    UNEXPECTED = "unexpected"  # a bug: failed like a transient error, and logged with a trace
    DEPOSED = "deposed"  # not the leader: nothing was written
    ABANDONED = "abandoned"  # the daemon is stopping: stopped between two actions


FAILURES = frozenset({Result.TRANSIENT, Result.PERMANENT, Result.UNEXPECTED})


@dataclass(frozen=True)
class Outcome:
    """Where a pass left a deployment and when to look at it again.

    `requeue_after` is in seconds; None means "wait for an event or the next resync".
    `terminal` is true for a failure that no retry can cure (a permanent error).
    """

    result: Result
    phase: Phase | None = None
    message: str = ""
    requeue_after: float | None = None
    terminal: bool = False

    @classmethod
    def done(cls, phase: Phase | None, message: str = "") -> Outcome:
        return cls(Result.DONE, phase, message)

    @classmethod
    def again(cls, phase: Phase, after_s: float, message: str = "") -> Outcome:
        return cls(Result.DONE, phase, message, requeue_after=max(0.0, after_s))

    @classmethod
    def skipped(cls, result: Result, message: str = "") -> Outcome:
        return cls(result, None, message)

    @property
    def failed(self) -> bool:
        return self.result in FAILURES
