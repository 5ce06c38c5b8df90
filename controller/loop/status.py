"""The status writer: the one owner of a deployment's status row and its events in a pass.

Created by the reconciler at the start of a pass (`StatusWriter.for_record`, or
`for_teardown` for a deleted deployment) and handed to the executor. Nobody else sets the
status's fields: callers say what happened (`enter`, `progress`, `action`, `note`,
`observe`, `restarts`, `ready`, `failed`) and the writer decides what to write and when.
Every write goes through the fenced `StatusLog.record` (term row held, trust checked),
the status row and the events of one step in one transaction; it only writes on a phase
change, on progress short of 100% (100% rides along with the next phase's write) and when
the pass ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

import structlog

from controller.loop import faults
from controller.loop.ports import Stores
from controller.model.errors import BerthError
from controller.model.outcome import Outcome, Result
from controller.model.phases import Phase
from controller.model.records import (
    DeploymentRecord,
    Event,
    Fence,
    MutationAction,
    StatusChange,
    StatusWrite,
)
from controller.observability.metrics import ACTIONS
from controller.policy.settle import Failure

log = structlog.get_logger("berth.status")


class Done(Protocol):
    """Called by the body of `StatusWriter.mutation` once its Docker call succeeded;
    `created` / `removed` name the container it made or removed (the creation record)."""

    def __call__(
        self,
        message: str,
        level: str = "info",
        created: str | None = None,
        removed: str | None = None,
        **metadata: Any,
    ) -> None: ...


# A replica vanished mid-pass: the next pass comes this soon (a floor against a tight loop
# if something keeps removing what Berth makes).
REPLAN_AFTER_S = 0.25


def replan(writer: StatusWriter | None, error: BerthError) -> Outcome:
    """A replica the pass acted on is gone: say so, keep the phase, and plan again at once
    (the world changed, not the spec: no failure, no backoff)."""
    log.warning("a replica vanished: planning again", error=str(error))
    if writer is None:
        return Outcome(Result.DONE, None, f"planning again: {error}", REPLAN_AFTER_S)
    with contextlib.suppress(BerthError):  # deposed meanwhile: the next leader plans
        writer.note(f"planning again: a replica vanished ({error})", level="warning")
        writer.finish()
    return Outcome.again(writer.phase, REPLAN_AFTER_S, f"planning again: {error}")


def held_progress(phase: Phase | None, percent: int) -> int:
    """The progress a status row says: `active` is complete, always (schema 25 refuses
    anything else); another phase says `percent`, its last written progress when a pass
    begins, so a write that moves nothing else does not set the bar back to 0."""
    return 100 if phase == Phase.ACTIVE else percent


class StatusWriter:
    """Writes one deployment's status row and events; only writes what changed."""

    def __init__(self, stores: Stores, fence: Fence, status: StatusWrite) -> None:
        self._stores = stores
        self.fence = fence
        self._status = status
        self._pending: list[Event] = []
        self._create_row = False
        self._dirty = False

    @classmethod
    def for_record(
        cls, stores: Stores, fence: Fence, record: DeploymentRecord, desired_replicas: int
    ) -> StatusWriter:
        """The writer of a present deployment, starting from its recorded status; a
        deployment seen for the first time gets its row and a `queued` event."""
        writer = cls(
            stores,
            fence,
            StatusWrite(
                name=record.name,
                phase=record.phase or Phase.QUEUED,
                phase_progress=held_progress(record.phase, record.phase_progress),
                message=record.message,
                phase_metadata=record.phase_metadata,
                observed_generation=record.observed_generation,
                desired_replicas=desired_replicas,
                ready_replicas=record.ready_replicas,
                failure_kind=record.failure_kind,
                attempts=record.attempts,
                next_attempt_at=record.next_attempt_at,
                restart_count=record.restart_count,
                replica_restarts=record.replica_restarts,
                rollout_started_at=record.rollout_started_at,
                replicas=record.observed_replicas,
            ),
        )
        if record.phase is None:
            writer._create_row = True
            writer._pending.append(
                Event(
                    deployment=record.name,
                    kind="phase",
                    phase_to=Phase.QUEUED,
                    generation=record.generation,
                    message=f"new deployment (generation {record.generation})",
                )
            )
        return writer

    @classmethod
    def for_teardown(
        cls, stores: Stores, fence: Fence, name: str, record: DeploymentRecord | None
    ) -> StatusWriter:
        return cls(
            stores,
            fence,
            StatusWrite(
                name=name,
                phase=(record.phase if record else None) or Phase.QUEUED,
                phase_progress=held_progress(record.phase, record.phase_progress) if record else 0,
                observed_generation=record.observed_generation if record else 0,
                desired_replicas=0,
                ready_replicas=0,
            ),
        )

    # --- reading ---------------------------------------------------------------------------
    @property
    def phase(self) -> Phase:
        return self._status.phase

    # --- phases ----------------------------------------------------------------------------
    def stage(self, phase: Phase, message: str = "", **metadata: Any) -> None:
        """Like `enter`, but written with the next write (for a phase left at once)."""
        self._move(phase, message, metadata)

    def enter(self, phase: Phase, message: str = "", **metadata: Any) -> None:
        """Move to `phase` (progress 0), with a phase event when it is a change; write."""
        self._move(phase, message, metadata)
        self.flush()

    def _move(self, phase: Phase, message: str, metadata: dict[str, Any]) -> None:
        previous = self._status.phase
        faults.crash_point(f"before:{phase}")
        structlog.contextvars.bind_contextvars(phase=str(phase))
        status = replace(
            self._status,
            phase=phase,
            phase_progress=held_progress(phase, 0),
            phase_metadata=metadata,
            message=message,
        )
        if phase != Phase.FAILED:
            status = replace(status, failure_kind=None, next_attempt_at=None)
        self._status = status
        self._dirty = True
        if previous != phase:
            self._pending.append(
                Event(
                    deployment=status.name,
                    kind="phase",
                    level="error" if phase == Phase.FAILED else "info",
                    generation=status.observed_generation,
                    phase_from=previous,
                    phase_to=phase,
                    message=message or f"{previous} -> {phase}",
                    metadata=metadata,
                )
            )

    def progress(self, done: int, total: int, write: bool = True, **metadata: Any) -> None:
        """Record progress; at 100% it rides along with the next write (the next phase's),
        and so does any progress when not `write` (the next call's intent carries it)."""
        percent = held_progress(
            self._status.phase, 100 if total <= 0 else min(100, done * 100 // total)
        )
        merged = {**self._status.phase_metadata, **metadata}
        if done >= total:  # rides along with the next write
            self._status = replace(self._status, phase_progress=percent, phase_metadata=merged)
            return
        self._change(phase_progress=percent, phase_metadata=merged)
        if write:  # only what changed: a pass waiting on the same progress writes nothing
            self.finish()

    # --- facts of the pass -----------------------------------------------------------------
    def observe(self, generation: int, desired_replicas: int, now: datetime | None = None) -> None:
        """The pass works on `generation` of a spec wanting `desired_replicas`; a
        generation seen for the first time (`now` given) starts its rollout's clock."""
        self._change(observed_generation=generation, desired_replicas=desired_replicas)
        if now is not None:
            self._change(rollout_started_at=now)

    def say(self, message: str) -> None:
        """The phase's message now (written with the next write, at the latest at the end)."""
        if message != self._status.message:
            self._status = replace(self._status, message=message)
            self._dirty = True

    def placement(self, rows: list[dict[str, Any]]) -> None:
        """Where the replicas run now (`model/replicas.replica_rows`): written at the end of
        the pass when it changed."""
        if rows != self._status.replicas:
            self._status = replace(self._status, replicas=rows)
            self._dirty = True

    def restarts(self, replica_restarts: dict[str, Any], restart_count: int) -> None:
        self._change(replica_restarts=replica_restarts, restart_count=restart_count)

    def retract_restarts(self, replica_restarts: dict[str, Any], restart_count: int) -> None:
        """The engine failed before this pass's restarts were made: keep the restart state
        as it was and drop their notes (an engine going down is no crash of the app)."""
        self.restarts(replica_restarts, restart_count)
        self._pending = [e for e in self._pending if "restarts" not in e.metadata]

    def ready(self, ready_replicas: int, converged: bool = False) -> None:
        """Ready replicas now; `converged` also ends the failure streak (attempts = 0)."""
        self._change(ready_replicas=ready_replicas)
        if converged:
            self._change(attempts=0)

    def _change(self, **fields: Any) -> None:
        """Set fields of the row; a value that differs makes it due for writing."""
        if any(getattr(self._status, key) != value for key, value in fields.items()):
            self._status = replace(self._status, **fields)
            self._dirty = True

    def failed(self, failure: Failure, error_type: str) -> None:
        """Record a failed pass: `failed` with the reason, the streak and the next attempt."""
        failed_in = self._status.phase
        self._status = replace(
            self._status,
            failure_kind=failure.kind,
            attempts=failure.attempts,
            next_attempt_at=failure.next_attempt_at,
        )
        self.enter(Phase.FAILED, failure.message, failed_in=str(failed_in), error_type=error_type)

    # --- events ----------------------------------------------------------------------------
    def action(self, action: str, message: str, level: str = "info", **metadata: Any) -> None:
        """An action that changes no container (an image ensured): written with the next
        write. A container mutation records its event itself (`mutation`)."""
        log.info(message, deployment=self._status.name, action=action, **metadata)
        self._pending.append(self._action_event(action, message, level, metadata))

    def _action_event(
        self, action: str, message: str, level: str, metadata: dict[str, Any]
    ) -> Event:
        return Event(
            deployment=self._status.name,
            kind="action",
            level=level,
            action=action,
            generation=self._status.observed_generation,
            message=message,
            metadata=metadata,
        )

    def note(self, message: str, level: str = "info", **metadata: Any) -> None:
        self._pending.append(self.note_event(message, level, **metadata))

    def note_event(self, message: str, level: str = "info", **metadata: Any) -> Event:
        """A note of this deployment, for a store to write with what it records."""
        return Event(
            deployment=self._status.name,
            kind="note" if level == "info" else "error",
            level=level,
            generation=self._status.observed_generation,
            message=message,
            metadata=metadata,
        )

    # --- writing ---------------------------------------------------------------------------
    @contextmanager
    def mutation(self, action: MutationAction, target: str, carry: bool = False) -> Iterator[Done]:
        """Fence one Docker mutation (committed intent, trust checked before the call) and
        count it. The body calls `done(message, **metadata)` once the call succeeded: that
        action event is written with the mutation's outcome, in the same transaction.
        `carry`: what is staged and not yet written (the phase this call belongs to, its
        events, progress) is written in the intent's transaction; only the pass's own
        thread may ask it (the writer is not shared)."""
        change = self.staged() if carry else None
        with self._stores.mutations.mutation(
            self.fence, self._status.name, action, target, change
        ) as record:
            if change is not None:  # committed with the intent
                self.written()

            def done(
                message: str,
                level: str = "info",
                created: str | None = None,
                removed: str | None = None,
                **metadata: Any,
            ) -> None:
                log.info(message, deployment=self._status.name, action=action, **metadata)
                record.events.append(self._action_event(action, message, level, metadata))
                record.created, record.removed = created, removed

            try:
                yield done
            except BerthError:
                ACTIONS.labels(kind=action, result="error").inc()
                raise
        ACTIONS.labels(kind=action, result="ok").inc()

    def flush(self) -> None:
        self._stores.status.record(self.fence, self._status, self._pending, self._create_row)
        self.written()

    def staged(self) -> StatusChange | None:
        """What is staged and not yet written, for another fenced transaction to write
        (`written` once it committed); None when nothing is."""
        if self._pending or self._create_row or self._dirty:
            return StatusChange(self._status, tuple(self._pending), self._create_row)
        return None

    def written(self) -> None:
        self._create_row = False
        self._dirty = False
        self._pending = []

    def finish(self) -> None:
        """End of a pass: write a new deployment's row and whatever is still unwritten."""
        if self._pending or self._create_row or self._dirty:
            self.flush()

    def forget(self, removed: int) -> None:
        """A deleted deployment whose containers are gone: drop its row, keep its events."""
        events = [
            *self._pending,
            Event(
                deployment=self._status.name,
                kind="phase",
                phase_from=self._status.phase,
                phase_to=None,
                message=f"deleted: {removed} container(s) removed",
            ),
        ]
        self._stores.status.forget(self.fence, self._status.name, events)
        self._pending = []
