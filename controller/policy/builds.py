"""Pure decisions about builds: what a pass does with a source deployment, what a build's
failure leads to, and what `docker build` output says about progress.

No I/O, time as a parameter. Called by the source stage of a pass
(`controller.loop.sources`: `decide`), by the build dispatcher when a job ends
(`controller.loop.builder`: `after_failure`) and by the build job while it reads output
(`controller.loop.build_job`: `parse_step`, `failed_step`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from controller.model.builds import BuildRecord, BuildStatus
from controller.model.phases import Phase
from controller.model.source import SourceSpec
from controller.policy.backoff import backoff_s
from controller.policy.settle import clock_time

# While a build waits or runs, a pass looks again this often (a NOTIFY on every change of
# the build row usually comes first).
BUILD_POLL_S = 5.0
STEP_LINE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
NON_ZERO = re.compile(r"returned a non-zero code: (\d+)")


class SourceAction(StrEnum):
    ENQUEUE = "enqueue"  # no build answers this source yet (or the row changed since one failed)
    WAIT = "wait"  # queued or running: say where it is, touch no container
    USE = "use"  # succeeded: converge the containers onto its image
    FAIL = "fail"  # failed, dead or cancelled: the pass fails, old containers keep serving


@dataclass(frozen=True)
class SourceDecision:
    action: SourceAction
    phase: Phase = Phase.QUEUED
    message: str = ""
    image: str | None = None
    progress: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)


def decide(
    build: BuildRecord | None, source_key: str, generation: int, now: datetime
) -> SourceDecision:
    """What a pass does for a source deployment at `generation` whose source has key
    `source_key`, given the deployment's newest build (None: never built).

    A build answers every generation with the same source: a change that keeps the source
    (scaling, env) rebuilds nothing and re-resolves no branch. A changed source queues a
    new build (which resolves its ref again), and so does any row change after a build
    that failed."""
    if build is None or build.source_key != source_key:
        return SourceDecision(SourceAction.ENQUEUE)
    if build.finished and build.status != BuildStatus.SUCCEEDED and build.generation < generation:
        return SourceDecision(SourceAction.ENQUEUE)  # the row changed since: try again
    meta: dict[str, Any] = {"build_id": build.id}
    if build.revision:
        meta["commit" if build.source.get("git") else "sha256"] = build.revision
    if build.status == BuildStatus.QUEUED:
        message = queued_message(build, now)
        return SourceDecision(SourceAction.WAIT, Phase.QUEUED, message, metadata=meta)
    if build.status == BuildStatus.RUNNING:
        if build.files is not None:
            meta["files"] = build.files
        if build.step in ("", "pulling_source"):
            message = f"build {build.id}: fetching {describe_source(build.source)}"
            return SourceDecision(SourceAction.WAIT, Phase.PULLING_SOURCE, message, metadata=meta)
        message = f"build {build.id}: {build.step}"
        return SourceDecision(
            SourceAction.WAIT, Phase.BUILDING, message, progress=build.progress, metadata=meta
        )
    if build.status == BuildStatus.SUCCEEDED:
        assert build.image is not None
        return SourceDecision(SourceAction.USE, image=build.image, metadata=meta)
    verb = {
        BuildStatus.FAILED: "failed",
        BuildStatus.DEAD: f"is dead after {build.attempts} attempts",
        BuildStatus.CANCELLED: "was cancelled",
    }[build.status]
    reason = f": {build.error}" if build.error else ""
    message = f"build {build.id} {verb}{reason} (`berth retry {build.deployment}` builds again)"
    return SourceDecision(SourceAction.FAIL, message=message, metadata=meta)


def queued_message(build: BuildRecord, now: datetime) -> str:
    message = f"build queued: position {build.position or '?'} of {build.queue_length or '?'}"
    if build.not_before is not None and build.not_before > now:
        message += f"; attempt {build.attempts + 1} at {clock_time(build.not_before)}"
        if build.error:
            message += f" (last: {build.error.splitlines()[0][:200]})"
    return message


def describe_source(source: dict[str, Any]) -> str:
    return SourceSpec.model_validate(source).describe()


@dataclass(frozen=True)
class AfterFailure:
    status: BuildStatus  # queued again (retry) or dead
    retry_after_s: float | None


def after_failure(attempts: int, max_attempts: int, base_s: float, max_s: float) -> AfterFailure:
    """A transient failure of attempt `attempts` (1-based): retried with the one backoff
    formula, or dead-lettered once `max_attempts` were made."""
    if attempts >= max_attempts:
        return AfterFailure(BuildStatus.DEAD, None)
    return AfterFailure(BuildStatus.QUEUED, backoff_s(attempts, base_s, max_s))


def parse_step(line: str) -> tuple[int, int, str] | None:
    """`Step 3/7 : RUN make` -> (3, 7, "RUN make")."""
    match = STEP_LINE.match(line.strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), match.group(3)


def failed_step(lines: list[str]) -> tuple[str | None, int | None]:
    """The last step started and the exit code of the command that failed, from output."""
    step: str | None = None
    exit_code: int | None = None
    for line in lines:
        parsed = parse_step(line)
        if parsed is not None:
            step = f"step {parsed[0]}/{parsed[1]} ({parsed[2][:120]})"
        found = NON_ZERO.search(line)
        if found is not None:
            exit_code = int(found.group(1))
    return step, exit_code
