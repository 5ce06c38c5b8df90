"""The Postgres gateway: the only module that imports psycopg.

Called by the reconciler (desired state, status and events), the watchers (LISTEN), the
daemon (migrations at start) and the CLI. SQL lives in `sql/queries.sql` (named queries)
and `sql/migrations/NNNN_*.sql`; this module loads them, runs them, and turns driver
errors into `DatabaseUnavailable` (transient, retried with tenacity) or
`DatabaseRejected` (permanent, carrying Postgres' own message, which names the field).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import select
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from controller.errors import DatabaseRejected, DatabaseUnavailable, Deposed, retry_transient
from controller.metrics import POSTGRES_DURATION, POSTGRES_ERRORS, declare_postgres_operations
from controller.records import DeploymentRecord, Event, Fence, StatusWrite

NOTIFY_CHANNEL = "berth_deployments"
_QUERY_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")
T = TypeVar("T")


def advisory_key(name: str) -> int:
    """A signed 64-bit advisory-lock key: the first 8 bytes of sha256(name)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


MIGRATION_LOCK_NAME = "berth.migrations"
# Operations timed besides the named queries (the label `operation` stays bounded).
OPERATIONS = (
    "connect",
    "migrate",
    "sql",
    "ensure_status",
    "record",
    "forget",
    "intent",
    "mutation",
    "lock_connect",
    "lock_acquire",
    "claim_term",
    "heartbeat",
    "listen",
)


@cache
def queries() -> dict[str, str]:
    """Named queries from sql/queries.sql."""
    text = resources.files("controller").joinpath("sql/queries.sql").read_text()
    parts = _QUERY_HEADER.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


declare_postgres_operations(tuple(queries()) + OPERATIONS)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every numbered migration, in order."""
    folder = resources.files("controller").joinpath("sql/migrations")
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found)


def _translate(error: Exception) -> Exception:
    if isinstance(error, PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError):
        return DatabaseUnavailable(f"Postgres unavailable: {error}")
    if isinstance(error, psycopg.Error):
        diag = getattr(error, "diag", None)
        message = (diag.message_primary if diag is not None else None) or str(error)
        return DatabaseRejected(message)
    return error


@contextmanager
def _translated(operation: str, timed: bool = True) -> Iterator[None]:
    """Time one operation (bounded label: a query name or a fixed word) and translate errors."""
    started = time.perf_counter()
    try:
        yield
    except (psycopg.Error, PoolTimeout) as error:
        translated = _translate(error)
        kind = "transient" if isinstance(translated, DatabaseUnavailable) else "permanent"
        POSTGRES_ERRORS.labels(operation=operation, kind=kind).inc()
        raise translated from error
    finally:
        if timed:
            POSTGRES_DURATION.labels(operation=operation).observe(time.perf_counter() - started)


def _check_idle_connection(conn: psycopg.Connection[Any]) -> None:
    """The pool's check before lending a connection, without a round trip (the stock check
    runs a query first, doubling the round trips of every transaction). An idle connection
    with something to read was closed or terminated by the server (say, a restart)."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("connection is closed")
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        # Close it: libpq has not noticed, and the pool would lend the same one again.
        conn.close()
        raise psycopg.OperationalError("connection was closed by the server")


def _adapt(params: dict[str, Any]) -> dict[str, Any]:
    return {
        key: Jsonb(value) if isinstance(value, dict | list) and key != "command" else value
        for key, value in params.items()
    }


class Database:
    """A small connection pool plus one method per use; every method is retried when transient."""

    def __init__(self, url: str, pool_size: int = 4, idle_in_transaction_s: float = 120.0) -> None:
        self.url = url
        # A leader paused inside a fenced mutation holds the term row; Postgres ends its
        # session after this long idle in the transaction, so a new leader is not blocked
        # forever. It must exceed the longest Docker call made inside such a transaction.
        options = f"-c idle_in_transaction_session_timeout={int(idle_in_transaction_s * 1000)}"
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max(2, pool_size),
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "connect_timeout": 5,
                "options": options,
                "application_name": "berth",
            },
            check=_check_idle_connection,
            open=False,
            name="berth",
        )
        with _translated("connect"):
            self._pool.open(wait=True, timeout=15)

    def close(self) -> None:
        self._pool.close()

    @retry_transient
    def _run(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with (
            _translated(query),
            self._pool.connection(timeout=10) as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            cursor.execute(queries()[query], _adapt(params or {}))
            return cursor.fetchall() if cursor.description else []

    @retry_transient
    def _in_transaction(self, operation: str, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        with _translated(operation), self._pool.connection(timeout=10) as conn, conn.transaction():
            return work(conn)  # Deposed raised inside rolls the transaction back

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

        with _translated("migrate"), self._pool.connection(timeout=10) as conn, conn.transaction():
            work(conn)
        return applied_now

    def schema_version(self) -> int:
        rows = self._run_sql_params(
            "SELECT coalesce(max(version), 0) AS v FROM berth_schema_migrations"
        )
        return int(rows[0]["v"])

    @retry_transient
    def _run_sql_params(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        """Ad-hoc SQL for benchmarks and operators' tools, never for the loop."""
        with (
            _translated("sql"),
            self._pool.connection(timeout=10) as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            cursor.execute(sql.encode(), params)
            return cursor.fetchall() if cursor.description else []

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

    # --- observed state: every write is fenced by the leader's term ----------------------
    @staticmethod
    def _fence(conn: psycopg.Connection[Any], fence: Fence) -> None:
        """Inside a transaction: hold the term row shared, or raise Deposed if it moved on."""
        found = conn.execute(
            queries()["fence_check"], {"cluster": fence.cluster, "term": fence.term}
        ).fetchone()
        if found is None:
            raise Deposed(f"term {fence.term} of cluster {fence.cluster!r} is over")
        fence.check_trust()

    def record(
        self,
        fence: Fence,
        status: StatusWrite | None,
        events: Sequence[Event] = (),
        create_row: bool = False,
    ) -> None:
        """Write a status row and its events atomically, only while `fence.term` is current;
        `create_row` first inserts the row of a deployment seen for the first time."""

        def work(conn: psycopg.Connection[Any]) -> None:
            self._fence(conn, fence)
            if status is not None and create_row:
                conn.execute(
                    queries()["ensure_status"],
                    {
                        "name": status.name,
                        "desired_replicas": status.desired_replicas,
                        "leader_term": fence.term,
                    },
                )
            if status is not None:
                params = {**status.__dict__, "leader_term": fence.term}
                conn.execute(queries()["write_status"], _adapt(params))
            self._insert_events(conn, fence, events)

        self._in_transaction("record", work)

    def forget(self, fence: Fence, name: str, events: Sequence[Event] = ()) -> None:
        """Drop the status row of a deleted deployment whose containers are gone."""

        def work(conn: psycopg.Connection[Any]) -> None:
            self._fence(conn, fence)
            conn.execute(queries()["delete_status"], {"name": name})
            self._insert_events(conn, fence, events)

        self._in_transaction("forget", work)

    @staticmethod
    def _insert_events(
        conn: psycopg.Connection[Any], fence: Fence, events: Sequence[Event]
    ) -> None:
        for event in events:
            params = {**event.__dict__, "leader_term": fence.term}
            conn.execute(queries()["insert_event"], _adapt(params))

    @contextmanager
    def mutation(self, fence: Fence, deployment: str, action: str, target: str) -> Iterator[None]:
        """Wrap one Docker mutation: a committed, fenced intent first, then the call inside a
        transaction holding the term row shared (a new leader's claim waits for it), then
        the intent's outcome. Raises Deposed before the call if leadership was lost."""
        intent = {
            "cluster": fence.cluster,
            "term": fence.term,
            "node_id": fence.node_id,
            "deployment": deployment,
            "action": action,
            "target": target,
        }

        def commit_intent(conn: psycopg.Connection[Any]) -> int:
            self._fence(conn, fence)
            row = conn.execute(queries()["insert_intent"], intent).fetchone()
            assert row is not None
            return int(row[0] if isinstance(row, tuple) else row["id"])

        intent_id = self._in_transaction("intent", commit_intent)
        outcome = "fenced"
        try:
            with (
                _translated("mutation"),
                self._pool.connection(timeout=10) as conn,
                conn.transaction(),
            ):
                self._fence(conn, fence)
                outcome = "error"
                yield
                outcome = "ok"
                conn.execute(queries()["finish_intent"], {"id": intent_id, "outcome": outcome})
        finally:
            if outcome != "ok":
                with contextlib.suppress(DatabaseUnavailable, DatabaseRejected):
                    self._run("finish_intent", {"id": intent_id, "outcome": outcome})

    def prune_mutations(self, older_than_s: float) -> None:
        self._run("prune_mutations", {"older_than_s": older_than_s})

    # --- cluster membership -----------------------------------------------------------
    def report_node(self, node: dict[str, Any]) -> None:
        self._run("upsert_node", node)

    def leader(self, cluster: str) -> dict[str, Any] | None:
        rows = self._run("select_leader", {"cluster": cluster})
        return rows[0] if rows else None

    def nodes(self, cluster: str, within_s: float = 30.0) -> list[dict[str, Any]]:
        return self._run("select_nodes", {"cluster": cluster, "within_s": within_s})

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
    with (
        _translated("listen", timed=False),
        psycopg.connect(url, autocommit=True, connect_timeout=5) as conn,
    ):
        conn.execute(f"LISTEN {channel}")
        yield None  # listening: anything changed from now on will be notified
        while True:
            received = False
            for notify in conn.notifies(timeout=poll_s):
                received = True
                yield notify.payload
            if not received:
                yield None


class LockSession:
    """The leader-election session: a dedicated, direct connection, never pooled.

    Postgres drops it (releasing the advisory lock) when the process dies, when an admin
    terminates it, or when it stays silent for `silence_timeout_s`: idle_session_timeout
    covers a paused or cut-off client whose kernel still answers, TCP keepalives and
    tcp_user_timeout a vanished host.
    """

    def __init__(self, url: str, application_name: str, silence_timeout_s: float) -> None:
        silence_ms = str(int(silence_timeout_s * 1000))
        probe_s = str(max(1, int(silence_timeout_s / 4)))
        with _translated("lock_connect"):
            self._conn = psycopg.connect(
                url,
                autocommit=True,
                connect_timeout=5,
                application_name=application_name,
                keepalives=1,
                keepalives_idle=probe_s,
                keepalives_interval=probe_s,
                keepalives_count=3,
                row_factory=dict_row,
            )
            for name, value in (
                ("idle_session_timeout", silence_ms),
                ("tcp_user_timeout", silence_ms),
                ("tcp_keepalives_idle", probe_s),
                ("tcp_keepalives_interval", probe_s),
                ("tcp_keepalives_count", "3"),
                ("statement_timeout", "0"),
            ):
                self._conn.execute("SELECT set_config(%s, %s, false)", [name, value])

    def acquire(self, key: int) -> None:
        """Block until this session holds the advisory lock (or `cancel` is called)."""
        with _translated("lock_acquire", timed=False):  # waiting is the point, not latency
            self._conn.execute("SELECT pg_advisory_lock(%s)", [key])

    def claim_term(self, cluster: str, node_id: str, host: str, pid: int) -> int:
        """Start a new term; waits for the previous leader's in-flight fenced transactions."""
        params = {"cluster": cluster, "node_id": node_id, "host": host, "pid": pid}
        with _translated("claim_term"):
            row = self._conn.execute(queries()["claim_term"], params).fetchone()
        assert row is not None
        return int(row["term"])

    def limit_statements(self, timeout_s: float) -> None:
        with _translated("lock_connect"):
            self._conn.execute(
                "SELECT set_config('statement_timeout', %s, false)", [str(int(timeout_s * 1000))]
            )

    def current_term(self, cluster: str) -> tuple[int, str] | None:
        """(term, holder id) as Postgres has it now: the heartbeat. A plain read, no lock."""
        with _translated("heartbeat"):
            row = self._conn.execute(queries()["select_leader"], {"cluster": cluster}).fetchone()
        return (int(row["term"]), str(row["holder_id"])) if row else None

    def cancel(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.cancel_safe()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()
