"""Builds as the loop sees them: the status vocabulary and one `builds` row.

Pure data. Produced by the Postgres gateway (`controller.gateways.postgres_builds`); read by
the source stage of a pass (`controller.loop.sources`), the pure build policy
(`controller.policy.builds`), the build dispatcher and the CLI. The database's CHECK
`builds_status_known` lists the same values; tests/unit/test_vocabulary.py keeps them equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class BuildStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DEAD = "dead"  # transient failures until BERTH_BUILD_MAX_ATTEMPTS: the dead letters


FINISHED = frozenset(
    {BuildStatus.SUCCEEDED, BuildStatus.FAILED, BuildStatus.CANCELLED, BuildStatus.DEAD}
)


@dataclass(frozen=True)
class BuildRecord:
    """One `builds` row (the columns the loop reads)."""

    id: int
    deployment: str
    generation: int
    source: dict[str, Any]
    source_key: str
    status: BuildStatus
    priority: int = 0
    attempts: int = 0
    revision: str | None = None
    step: str = ""
    progress: int = 0
    files: int | None = None
    image: str | None = None
    error: str | None = None
    exit_code: int | None = None
    cached: bool = False
    term: int | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    not_before: datetime | None = None
    cancel_requested: bool = False
    position: int | None = None  # in the queue (1 = next), while queued
    queue_length: int | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> BuildRecord:
        return cls(
            id=row["id"],
            deployment=row["deployment"],
            generation=row["generation"],
            source=row["source"],
            source_key=row["source_key"],
            status=BuildStatus(row["status"]),
            priority=row.get("priority") or 0,
            attempts=row.get("attempts") or 0,
            revision=row.get("revision"),
            step=row.get("step") or "",
            progress=row.get("progress") or 0,
            files=row.get("files"),
            image=row.get("image"),
            error=row.get("error"),
            exit_code=row.get("exit_code"),
            cached=bool(row.get("cached")),
            term=row.get("term"),
            queued_at=row.get("queued_at"),
            started_at=row.get("started_at"),
            finished_at=row.get("finished_at"),
            not_before=row.get("not_before"),
            cancel_requested=row.get("cancel_requested_at") is not None,
            position=row.get("position"),
            queue_length=row.get("queue_length"),
        )

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class BuildResult:
    """What a build job reports when it ends (the dispatcher writes it)."""

    status: BuildStatus
    image: str | None = None
    revision: str | None = None
    error: str | None = None
    exit_code: int | None = None
    cached: bool = False
    retry_after_s: float | None = None  # a transient failure: queued again after this
