"""The Postgres gateway: the only module that imports psycopg.

Called by the reconciler (desired state, status and events), the watchers (LISTEN), the
daemon (migrations at start) and the CLI. SQL lives in `sql/queries.sql` (named queries)
and `sql/migrations/NNNN_*.sql`; this module loads them, runs them, and turns driver
errors into `DatabaseUnavailable` (transient, retried with tenacity) or
`DatabaseRejected` (permanent, carrying Postgres' own message, which names the field).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from controller.errors import DatabaseRejected, DatabaseUnavailable, retry_transient

NOTIFY_CHANNEL = "berth_deployments"
_QUERY_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")
T = TypeVar("T")


def advisory_key(name: str) -> int:
    """A signed 64-bit advisory-lock key: the first 8 bytes of sha256(name)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


MIGRATION_LOCK_NAME = "berth.migrations"


@cache
def queries() -> dict[str, str]:
    """Named queries from sql/queries.sql."""
    text = resources.files("controller").joinpath("sql/queries.sql").read_text()
    parts = _QUERY_HEADER.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every numbered migration, in order."""
    folder = resources.files("controller").joinpath("sql/migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found)


@dataclass(frozen=True)
class DeploymentRecord:
    """A deployment row joined with its status row; `present` is false once deleted."""

    name: str
    present: bool
    spec: dict[str, Any] | None
    generation: int
    phase: str | None
    phase_updated_at: datetime | None
    observed_generation: int
    ready_replicas: int
    failure_kind: str | None
    attempts: int
    next_attempt_at: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DeploymentRecord:
        spec = None
        if row["present"]:
            spec = {
                key: row[key]
                for key in (
                    "name",
                    "image",
                    "command",
                    "env",
                    "ports",
                    "replicas",
                    "healthcheck",
                    "labels",
                )
            }
        return cls(
            name=row["name"],
            present=row["present"],
            spec=spec,
            generation=row["generation"] or 0,
            phase=row["phase"],
            phase_updated_at=row["phase_updated_at"],
            observed_generation=row["observed_generation"] or 0,
            ready_replicas=row["ready_replicas"] or 0,
            failure_kind=row["failure_kind"],
            attempts=row["attempts"] or 0,
            next_attempt_at=row["next_attempt_at"],
        )


@dataclass(frozen=True)
class StatusWrite:
    """The whole status row of one deployment as the reconciler wants it."""

    name: str
    phase: str
    phase_progress: int
    observed_generation: int
    desired_replicas: int
    ready_replicas: int
    message: str = ""
    phase_metadata: dict[str, Any] = field(default_factory=dict)
    failure_kind: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class Event:
    """One deployment_events row."""

    deployment: str
    kind: str
    message: str
    level: str = "info"
    generation: int | None = None
    phase_from: str | None = None
    phase_to: str | None = None
    action: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _translate(error: Exception) -> Exception:
    if isinstance(error, PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError):
        return DatabaseUnavailable(f"Postgres unavailable: {error}")
    if isinstance(error, psycopg.Error):
        diag = getattr(error, "diag", None)
        message = (diag.message_primary if diag is not None else None) or str(error)
        return DatabaseRejected(message)
    return error


@contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except psycopg.Error as error:
        raise _translate(error) from error
    except PoolTimeout as error:
        raise _translate(error) from error


def _adapt(params: dict[str, Any]) -> dict[str, Any]:
    return {
        key: Jsonb(value) if isinstance(value, dict | list) and key != "command" else value
        for key, value in params.items()
    }


class Database:
    """A small connection pool plus one method per use; every method is retried when transient."""

    def __init__(self, url: str, pool_size: int = 4) -> None:
        self.url = url
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max(2, pool_size),
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": 5},
            check=ConnectionPool.check_connection,
            open=False,
            name="berth",
        )
        with _translated():
            self._pool.open(wait=True, timeout=15)

    def close(self) -> None:
        self._pool.close()

    @retry_transient
    def _run(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with (
            _translated(),
            self._pool.connection(timeout=10) as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            cursor.execute(queries()[query], _adapt(params or {}))
            return cursor.fetchall() if cursor.description else []

    @retry_transient
    def _in_transaction(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        with _translated(), self._pool.connection(timeout=10) as conn, conn.transaction():
            return work(conn)

    # --- schema -----------------------------------------------------------------------
    @retry_transient
    def migrate(self) -> list[int]:
        """Apply missing migrations in one transaction under an advisory lock; return them."""
        applied_now: list[int] = []

        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [advisory_key(MIGRATION_LOCK_NAME)])
            conn.execute(
                "CREATE TABLE IF NOT EXISTS berth_schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {
                row["version"]
                for row in conn.execute("SELECT version FROM berth_schema_migrations")
            }
            for version, name, sql in migrations():
                if version in done:
                    continue
                conn.execute(sql.encode())
                conn.execute(
                    "INSERT INTO berth_schema_migrations (version, name) VALUES (%s, %s)",
                    [version, name],
                )
                applied_now.append(version)

        with _translated(), self._pool.connection(timeout=10) as conn, conn.transaction():
            work(conn)
        return applied_now

    def schema_version(self) -> int:
        rows = self._run_sql("SELECT coalesce(max(version), 0) AS v FROM berth_schema_migrations")
        return int(rows[0]["v"])

    @retry_transient
    def _run_sql(self, sql: str) -> list[dict[str, Any]]:
        with (
            _translated(),
            self._pool.connection(timeout=10) as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            return cursor.execute(sql.encode()).fetchall()

    # --- desired state ----------------------------------------------------------------
    def fetch_all(self) -> list[DeploymentRecord]:
        return [DeploymentRecord.from_row(row) for row in self._run("select_deployments")]

    def fetch_one(self, name: str) -> DeploymentRecord | None:
        rows = self._run("select_deployment", {"name": name})
        return DeploymentRecord.from_row(rows[0]) if rows else None

    def upsert_deployment(self, spec: dict[str, Any]) -> tuple[int, bool]:
        rows = self._run("upsert_deployment", spec)
        return int(rows[0]["generation"]), bool(rows[0]["inserted"])

    def delete_deployment(self, name: str) -> bool:
        return bool(self._run("delete_deployment", {"name": name}))

    # --- observed state ---------------------------------------------------------------
    def ensure_status(self, name: str, desired_replicas: int) -> None:
        self._run("ensure_status", {"name": name, "desired_replicas": desired_replicas})

    def record(self, status: StatusWrite | None, events: Sequence[Event] = ()) -> None:
        """Write a status row and its events atomically."""

        def work(conn: psycopg.Connection[Any]) -> None:
            if status is not None:
                conn.execute(queries()["write_status"], _adapt(status.__dict__))
            for event in events:
                conn.execute(queries()["insert_event"], _adapt(event.__dict__))

        self._in_transaction(work)

    def forget(self, name: str, events: Sequence[Event] = ()) -> None:
        """Drop the status row of a deleted deployment whose containers are gone."""

        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(queries()["delete_status"], {"name": name})
            for event in events:
                conn.execute(queries()["insert_event"], _adapt(event.__dict__))

        self._in_transaction(work)

    # --- reading for the CLI ----------------------------------------------------------
    def overview(self, name: str | None = None) -> list[dict[str, Any]]:
        if name is None:
            return self._run("select_overview")
        return self._run("select_overview_one", {"name": name})

    def spec_row(self, name: str) -> dict[str, Any] | None:
        rows = self._run("select_spec", {"name": name})
        return rows[0] if rows else None

    def status_row(self, name: str) -> dict[str, Any] | None:
        rows = self._run("select_status", {"name": name})
        return rows[0] if rows else None

    def events(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        return self._run("select_events", {"name": name, "limit": limit})


def listen(url: str, channel: str = NOTIFY_CHANNEL, poll_s: float = 1.0) -> Iterator[str | None]:
    """Yield each NOTIFY payload on `channel`, and None every `poll_s` without one.

    Uses its own connection (LISTEN needs a session). Raises DatabaseUnavailable when the
    connection is lost; the caller reconnects and resyncs.
    """
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"LISTEN {channel}")
            yield None  # listening: anything changed from now on will be notified
            while True:
                received = False
                for notify in conn.notifies(timeout=poll_s):
                    received = True
                    yield notify.payload
                if not received:
                    yield None
    except psycopg.Error as error:
        raise _translate(error) from error
