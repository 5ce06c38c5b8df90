"""Rollouts, decided: when a start-first rollout is rolled back, and what serves meanwhile.

Pure: no I/O, time as a parameter. Called by the reconciler's rollback step
(`controller.loop.rollback`): `rollback_reason` after each pass's actions, and
`serving_spec` when a rolled-back generation keeps running the revision it fell back to;
by the executor: `retirement_order`, which replicas leave before the new ones are placed
and which after they started.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from controller.model.phases import Phase
from controller.model.records import DeploymentRecord
from controller.model.spec import DeploymentSpec, parse_spec
from controller.policy.planner import Action, CreateReplica, RemoveReason, RetireReplica


def retirement_order(
    actions: Sequence[Action], start_first: bool
) -> tuple[list[RetireReplica], list[RetireReplica]]:
    """(early, late): the retirements made before this pass places new replicas, and those
    made once the new ones started.

    Start-first with replicas to place: an old revision's (stale) replicas leave last, out
    of the routes, drained and stopped while the new ones come up. Anything else leaves
    first: a dead or duplicate replica of the current revision holds the name its
    replacement needs, and stop-first (a fixed host port cannot be held twice) empties the
    slot before it is filled again."""
    retirements = [a for a in actions if isinstance(a, RetireReplica)]
    retire_last = start_first and any(isinstance(a, CreateReplica) for a in actions)
    late = [a for a in retirements if retire_last and a.reason == RemoveReason.STALE]
    early = [a for a in retirements if a not in late]
    return early, late


def held_back(record: DeploymentRecord) -> bool:
    """This generation was rolled back: its containers follow the serving revision until
    the row changes."""
    return (
        record.phase == Phase.ROLLED_BACK
        and record.observed_generation == record.generation
        and record.serving_spec is not None
    )


def serving_spec(record: DeploymentRecord) -> DeploymentSpec:
    assert record.serving_spec is not None
    spec = parse_spec({**record.serving_spec, "name": record.name})
    return spec.with_secret_versions(record.secret_versions)


def rollback_reason(
    record: DeploymentRecord,
    spec: DeploymentSpec,
    ready: int,
    crash_looping: Sequence[str],
    now: datetime,
    not_ready: str = "",
) -> str | None:
    """Why the rollout of `spec` must be rolled back now, or None: only a start-first
    rollout with auto_rollback, with an older revision serving to fall back to, whose new
    replicas crash-loop or are not all ready within the progress deadline (`not_ready`:
    where they are and the runtime's words on why, on a runtime with nodes)."""
    rollout = spec.rollout
    if (
        rollout.strategy != "start-first"
        or not rollout.auto_rollback
        or record.serving_hash is None
        or record.serving_hash == spec.spec_hash
        or ready >= spec.replicas
    ):
        return None
    if crash_looping:
        return "new replicas crash-loop: " + "; ".join(crash_looping)
    started = record.rollout_started_at
    if started is not None and (now - started).total_seconds() > rollout.progress_deadline_s:
        return (
            f"{ready}/{spec.replicas} new replicas ready after the progress deadline "
            f"({rollout.progress_deadline_s:g}s)" + (f": {not_ready}" if not_ready else "")
        )
    return None


def revision_spec(spec: DeploymentSpec) -> dict[str, Any]:
    """What a revision keeps: the spec with the image it ran (never a source)."""
    return spec.model_dump(mode="json", exclude={"name"})
