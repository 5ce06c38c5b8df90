"""Automatic rollback of a start-first rollout, and a rolled-back generation's upkeep.

Called by the reconciler: `spec_to_run` before planning (a rolled-back generation keeps
running the revision it fell back to, until the row changes), `roll_back_if_due` after
the pass's actions, and `serve` once a generation is active (its revision becomes the
serving one). The decisions are `controller.policy.rollout`; what is recorded goes
through the status writer and the revision store, fenced like every write. A rollback
puts nothing new in the routes: the old revision never left them; the new revision's
replicas are taken out before they are stopped (the executor's withdraw-and-drain).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import structlog

from controller.loop.ports import RevisionLog
from controller.loop.status import StatusWriter
from controller.model.phases import Phase
from controller.model.records import DeploymentRecord
from controller.model.spec import DeploymentSpec
from controller.observability.metrics import ROLLBACKS
from controller.policy import rollout as policy

log = structlog.get_logger("berth.rollback")


class Rollbacks:
    def __init__(self, store: RevisionLog) -> None:
        self.store = store

    def spec_to_run(
        self, record: DeploymentRecord, spec: DeploymentSpec
    ) -> tuple[DeploymentSpec, bool]:
        """The spec whose containers this pass converges to, and whether it is a
        rolled-back generation's serving revision rather than the row's."""
        if policy.held_back(record):
            return policy.serving_spec(record), True
        return spec, False

    def roll_back_if_due(
        self,
        record: DeploymentRecord,
        spec: DeploymentSpec,
        writer: StatusWriter,
        ready: int,
        crash_looping: Sequence[str],
        now: datetime,
        not_ready: str = "",
    ) -> str | None:
        """Roll the rollout of `spec` back when the policy says so: recorded as a
        `rolled_back` revision, an event, a metric and the phase; the caller then
        converges to the serving revision. Returns the message, or None."""
        reason = policy.rollback_reason(record, spec, ready, crash_looping, now, not_ready)
        if reason is None:
            return None
        assert spec.image is not None
        revision = self.store.record_rollback(
            writer.fence,
            record.name,
            record.generation,
            policy.revision_spec(spec),
            spec.spec_hash,
            spec.image,
            reason,
        )
        kind = "crash_loop" if crash_looping else "progress_deadline"
        ROLLBACKS.labels(reason=kind).inc()
        message = (
            f"generation {record.generation} rolled back to revision {record.serving_revision}: "
            f"{reason}"
        )
        log.warning("rollout rolled back", deployment=record.name, reason=reason)
        writer.enter(
            Phase.ROLLED_BACK,
            message,
            rolled_back_revision=revision,
            serving_revision=record.serving_revision,
            reason=kind,
        )
        return message

    def serve(self, record: DeploymentRecord, spec: DeploymentSpec, writer: StatusWriter) -> None:
        """An active generation's spec is the serving revision (a new one if it changed),
        written with what the writer staged (the phase it serves in) in one transaction;
        otherwise the staged status is written alone."""
        if record.serving_hash == spec.spec_hash or spec.image is None:
            writer.flush()
            return
        change = writer.staged()
        self.store.serve_revision(
            writer.fence,
            record.name,
            record.generation,
            policy.revision_spec(spec),
            spec.spec_hash,
            spec.image,
            change,
            lambda revision: writer.note_event(
                f"revision {revision} serves (generation {record.generation})", revision=revision
            ),
        )
        if change is not None:
            writer.written()
