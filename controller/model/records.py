"""Plain records exchanged with the Postgres gateway: rows in, writes out, and the fence.

Pure data, no driver: produced and taken by the Postgres gateway
(`controller.gateways.postgres`); read by the reconciler, the resync, the status writer
and the leadership module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from controller.model.phases import Phase
from controller.model.provenance import CreationRecords
from controller.model.spec import COLUMN_FIELDS


class MutationAction(StrEnum):
    """A runtime change the mutation log fences (`berth_mutations.action`; migration 16's
    CHECK lists the same, tests/unit/test_vocabulary.py holds them equal)."""

    CREATE = "create"
    START = "start"
    RESTART = "restart"
    REMOVE = "remove"


class Resolution(StrEnum):
    """What a new term found of an intent its predecessor left without outcome
    (`berth_mutations.resolution`, the CHECK of migration 5)."""

    DONE = "done"
    NOT_DONE = "not done"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class DeploymentRecord:
    """A deployment row joined with its status row; `present` is false once deleted."""

    name: str
    present: bool
    spec: dict[str, Any] | None
    generation: int
    phase: Phase | None
    phase_updated_at: datetime | None
    observed_generation: int
    ready_replicas: int
    failure_kind: str | None
    attempts: int
    next_attempt_at: datetime | None
    leader_term: int = 0
    # The phase's progress, message and metadata as last written (percent; `active` is 100,
    # schema 25): a pass begins from them, and writes only what it changes.
    phase_progress: int = 0
    message: str = ""
    phase_metadata: dict[str, Any] = field(default_factory=dict)
    restart_count: int = 0
    replica_restarts: dict[str, Any] = field(default_factory=dict)
    # Where its replicas ran at the last pass (`model/replicas.ReplicaRow.as_json` each).
    observed_replicas: list[dict[str, Any]] = field(default_factory=list)
    # Times the current generation was found stuck and resumed (persisted: a new leader
    # continues the count).
    stuck_resumes: int = 0
    # Containers Berth created for it (ids and names), creates still in flight (names), and
    # the time from which containers need such a record to be adopted.
    creation_records: CreationRecords = field(default_factory=CreationRecords)
    # A build of it waits in the queue: waiting there is not being stuck.
    build_queued: bool = False
    # The revision whose replicas serve, its spec (with the image it ran) and spec hash;
    # when the current generation's rollout began (its progress deadline counts from there).
    serving_revision: int | None = None
    serving_spec: dict[str, Any] | None = None
    serving_hash: str | None = None
    rollout_started_at: datetime | None = None
    # The current version of each secret its env references (secrets.version).
    secret_versions: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DeploymentRecord:
        spec: dict[str, Any] | None = None
        if row["present"]:
            spec = {key: row[key] for key in ("name", *COLUMN_FIELDS) if key in row}
            spec.update(row.get("workload") or {})  # schema 12's fields a row sets
        return cls(
            name=row["name"],
            present=row["present"],
            spec=spec,
            generation=row["generation"] or 0,
            phase=Phase(row["phase"]) if row["phase"] is not None else None,
            phase_updated_at=row["phase_updated_at"],
            observed_generation=row["observed_generation"] or 0,
            ready_replicas=row["ready_replicas"] or 0,
            failure_kind=row["failure_kind"],
            attempts=row["attempts"] or 0,
            next_attempt_at=row["next_attempt_at"],
            leader_term=row.get("leader_term") or 0,
            phase_progress=row.get("phase_progress") or 0,
            message=row.get("message") or "",
            phase_metadata=row.get("phase_metadata") or {},
            restart_count=row.get("restart_count") or 0,
            replica_restarts=row.get("replica_restarts") or {},
            observed_replicas=row.get("observed_replicas") or [],
            stuck_resumes=row.get("stuck_resumes") or 0,
            creation_records=CreationRecords(
                ids=frozenset(row.get("recorded_containers") or ()),
                names=frozenset(row.get("recorded_names") or ()),
                pending=frozenset(row.get("pending_creates") or ()),
                since=row.get("records_since"),
            ),
            build_queued=bool(row.get("build_queued")),
            serving_revision=row.get("serving_revision"),
            serving_spec=row.get("serving_spec"),
            serving_hash=row.get("serving_hash"),
            rollout_started_at=row.get("rollout_started_at"),
            secret_versions=dict(row.get("secret_versions") or {}),
        )


@dataclass(frozen=True)
class StatusWrite:
    """The whole status row of one deployment as the reconciler wants it."""

    name: str
    phase: Phase
    phase_progress: int
    observed_generation: int
    desired_replicas: int
    ready_replicas: int
    message: str = ""
    phase_metadata: dict[str, Any] = field(default_factory=dict)
    failure_kind: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    restart_count: int = 0
    replica_restarts: dict[str, Any] = field(default_factory=dict)
    rollout_started_at: datetime | None = None
    replicas: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class StatusChange:
    """A status row and the events leading to it, written in the transaction of a
    mutation's intent (`StatusWriter.mutation(carry=True)`): one commit, not two."""

    status: StatusWrite
    events: tuple[Event, ...] = ()
    create_row: bool = False


@dataclass(frozen=True)
class Event:
    """One deployment_events row."""

    deployment: str
    kind: str
    message: str
    level: str = "info"
    generation: int | None = None
    phase_from: Phase | None = None
    phase_to: Phase | None = None
    action: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    leader_term: int | None = None


@dataclass(frozen=True)
class Fence:
    """Proof of leadership for one term: every write and Docker mutation is checked against it.

    `check_trust` raises Deposed once the leader's trust window has lapsed (monotonic
    clock); the database re-checks `term` inside each write's own transaction.
    """

    cluster: str
    term: int
    node_id: str
    check_trust: Callable[[], None]


@dataclass(frozen=True)
class Intent:
    """One berth_mutations row left without an outcome by an earlier term."""

    id: int
    term: int
    deployment: str
    action: MutationAction
    target: str


@dataclass
class MutationRecord:
    """Filled by the code making a Docker mutation: the events written with its outcome, in
    the same transaction, so the audit trail never depends on a later write."""

    events: list[Event] = field(default_factory=list)
    created: str | None = None  # the id of a container this mutation created
    removed: str | None = None  # the id of a container this mutation removed


@dataclass(frozen=True)
class Claim:
    """A term just claimed, and what is known of the leader before it."""

    term: int
    previous_holder: str | None = None  # its node id; None for the first term
    previous_beat_age_s: float | None = None  # since its last heartbeat; None: never beat
