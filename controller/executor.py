"""The executor: the one place where planned actions become Docker changes.

Called by the reconciler with one deployment's actions. It walks the phases
pulling_image -> creating -> starting (skipping those with nothing to do), applies each
action through the Docker gateway, and records every phase transition and every action
in `deployment_events` through a `PhaseTracker`. Each action is an "ensure": repeating it
after a crash finds its work already done (see RECONCILIATION.md, "Idempotency").
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from controller import faults
from controller.database import Database
from controller.docker_gateway import DockerGateway
from controller.errors import BerthError
from controller.metrics import ACTIONS
from controller.planner import (
    Action,
    CreateReplica,
    RemoveContainer,
    RestartContainer,
    StartContainer,
)
from controller.records import Event, Fence, StatusWrite
from controller.spec import DeploymentSpec, container_config, container_name

log = structlog.get_logger("berth.executor")


class Abandoned(BerthError):
    """The daemon is stopping; the pass stopped between two actions (safe: level-triggered)."""


@dataclass
class PhaseTracker:
    """Writes one deployment's status row and events; only writes what changed."""

    database: Database
    fence: Fence
    status: StatusWrite
    pending_events: list[Event] = field(default_factory=list)
    create_row: bool = False

    @property
    def phase(self) -> str:
        return self.status.phase

    def stage(self, phase: str, message: str = "", **metadata: Any) -> None:
        """Like `enter`, but written with the next write (for a phase left at once)."""
        self._move(phase, message, metadata)

    def enter(self, phase: str, message: str = "", **metadata: Any) -> None:
        """Move to `phase` (progress 0), with a phase event when it is a change."""
        self._move(phase, message, metadata)
        self.flush()

    def _move(self, phase: str, message: str, metadata: dict[str, Any]) -> None:
        previous = self.status.phase
        faults.crash_point(f"before:{phase}")
        structlog.contextvars.bind_contextvars(phase=phase)
        self.status = replace(
            self.status, phase=phase, phase_progress=0, phase_metadata=metadata, message=message
        )
        if phase != "failed":
            self.status = replace(self.status, failure_kind=None, next_attempt_at=None)
        if phase == "active":
            self.status = replace(self.status, phase_progress=100)
        if previous != phase:
            level = "error" if phase == "failed" else "info"
            self.pending_events.append(
                Event(
                    deployment=self.status.name,
                    kind="phase",
                    level=level,
                    generation=self.status.observed_generation,
                    phase_from=previous,
                    phase_to=phase,
                    message=message or f"{previous} -> {phase}",
                    metadata=metadata,
                )
            )

    def progress(self, done: int, total: int, **metadata: Any) -> None:
        """Record progress; at 100% it rides along with the next write (the next phase's)."""
        percent = 100 if total <= 0 else min(100, done * 100 // total)
        merged = {**self.status.phase_metadata, **metadata}
        self.status = replace(self.status, phase_progress=percent, phase_metadata=merged)
        if done < total:
            self.flush()

    def action(self, action: str, message: str, level: str = "info", **metadata: Any) -> None:
        log.info(message, deployment=self.status.name, action=action, **metadata)
        self.pending_events.append(
            Event(
                deployment=self.status.name,
                kind="action",
                level=level,
                action=action,
                generation=self.status.observed_generation,
                message=message,
                metadata=metadata,
            )
        )

    def note(self, message: str, level: str = "info", **metadata: Any) -> None:
        self.pending_events.append(
            Event(
                deployment=self.status.name,
                kind="note" if level == "info" else "error",
                level=level,
                generation=self.status.observed_generation,
                message=message,
                metadata=metadata,
            )
        )

    def update(self, **changes: Any) -> None:
        self.status = replace(self.status, **changes)

    @contextmanager
    def mutation(self, action: str, target: str) -> Iterator[None]:
        """Fence one Docker mutation (committed intent, term held, trust checked); count it."""
        with self.database.mutation(self.fence, self.status.name, action, target):
            try:
                yield
            except BerthError:
                ACTIONS.labels(kind=action, result="error").inc()
                raise
        ACTIONS.labels(kind=action, result="ok").inc()

    def flush(self) -> None:
        self.database.record(self.fence, self.status, self.pending_events, self.create_row)
        self.create_row = False
        self.pending_events = []


class Executor:
    """Applies one deployment's plan; stops between actions when `stopping` is set."""

    def __init__(
        self,
        docker: DockerGateway,
        cluster: str,
        stop_timeout_s: int,
        stopping: threading.Event,
    ) -> None:
        self.docker = docker
        self.cluster = cluster
        self.stop_timeout_s = stop_timeout_s
        self.stopping = stopping

    def _check_stopping(self) -> None:
        if self.stopping.is_set():
            raise Abandoned("daemon stopping")

    def apply(
        self,
        tracker: PhaseTracker,
        spec: DeploymentSpec,
        generation: int,
        actions: Sequence[Action],
        notes: Mapping[int, str] | None = None,
    ) -> None:
        """Apply `actions`; `notes` (by replica) explain restarts in their events."""
        notes = notes or {}
        creates = [a for a in actions if isinstance(a, CreateReplica)]
        removes = [a for a in actions if isinstance(a, RemoveContainer)]
        starts: list[tuple[str, str, str, int, str]] = []
        for action in actions:
            if isinstance(action, StartContainer):
                reason = notes.get(action.replica, f"was {action.from_state}")
                starts.append(
                    (
                        action.container_id,
                        action.container_name,
                        action.from_state,
                        action.replica,
                        reason,
                    )
                )
            elif isinstance(action, RestartContainer):
                reason = notes.get(action.replica, "unhealthy")
                starts.append(
                    (action.container_id, action.container_name, "running", action.replica, reason)
                )
        if creates:
            self._check_stopping()
            tracker.enter("pulling_image", f"ensuring image {spec.image}", image=spec.image)
            # A pull changes no container and is harmless to repeat, and may take minutes:
            # it is not held in a fenced transaction, only preceded by a trust check.
            tracker.fence.check_trust()
            outcome = self.docker.ensure_image(spec.image)
            faults.crash_point("after:image")
            tracker.action(
                "image", f"image {spec.image} {outcome}", image=spec.image, outcome=outcome
            )
            tracker.progress(1, 1)
        changes = [a for a in actions if isinstance(a, RemoveContainer | CreateReplica)]
        if changes:
            tracker.enter(
                "creating",
                f"removing {len(removes)}, creating {len(creates)} container(s)",
                to_remove=len(removes),
                to_create=len(creates),
            )
            for done, action in enumerate(changes, start=1):
                self._check_stopping()
                if isinstance(action, RemoveContainer):
                    self._remove(tracker, action)
                else:
                    container_id = self._create(tracker, spec, generation, action.replica)
                    name = container_name(spec.name, action.replica, self.cluster)
                    reason = notes.get(action.replica, "new")
                    starts.append((container_id, name, "created", action.replica, reason))
                tracker.progress(done, len(changes))
        if starts:
            tracker.enter("starting", f"starting {len(starts)} container(s)", to_start=len(starts))
            for done, (container_id, name, from_state, replica, reason) in enumerate(starts, 1):
                self._check_stopping()
                kind = "restart" if from_state == "running" else "start"
                with tracker.mutation(kind, name):
                    if kind == "restart":
                        self.docker.restart(container_id, self.stop_timeout_s)
                    else:
                        self.docker.start(container_id, from_state)
                    faults.crash_point(f"after:{kind}")
                verb = {"paused": "unpaused", "running": "restarted"}.get(from_state, "started")
                tracker.action(
                    kind,
                    f"{verb} {name} ({reason})",
                    container=name,
                    container_id=container_id[:12],
                    replica=replica,
                )
                tracker.progress(done, len(starts))

    def _remove(self, tracker: PhaseTracker, action: RemoveContainer) -> None:
        with tracker.mutation("remove", action.container_name):
            self.docker.remove(action.container_id, self.stop_timeout_s)
            faults.crash_point("after:remove")
        tracker.action(
            "remove",
            f"removed {action.container_name} ({action.reason.value})",
            container=action.container_name,
            container_id=action.container_id[:12],
            replica=action.replica,
            reason=action.reason.value,
        )

    def _create(
        self, tracker: PhaseTracker, spec: DeploymentSpec, generation: int, replica: int
    ) -> str:
        config = container_config(spec, replica, self.cluster, generation)
        with tracker.mutation("create", config["name"]):
            container_id = self.docker.create(config)
            faults.crash_point("after:create")
        tracker.action(
            "create",
            f"created {config['name']} (spec {spec.spec_hash})",
            container=config["name"],
            container_id=container_id[:12],
            replica=replica,
            spec_hash=spec.spec_hash,
        )
        return container_id

    def teardown(self, tracker: PhaseTracker, removals: Sequence[RemoveContainer]) -> None:
        tracker.enter("deleting", f"removing {len(removals)} container(s)", to_remove=len(removals))
        for done, action in enumerate(removals, start=1):
            self._check_stopping()
            self._remove(tracker, action)
            tracker.progress(done, len(removals))
