"""The Postgres connection pool and its plumbing: named queries run, timed, translated and
retried when transient; transactions fenced by the leader's term; events inserted.

One `Pool` per process role (the daemon's, the API's, a CLI command's); every store by
concern (`Store`: the deployments, status, mutation log, builds, revisions, the API's,
retention...) runs its statements through the one pool it is given, with the same
plumbing (`PoolOps`). `controller.gateways.postgres.Database` holds the pool and its
stores. Only the gateways import psycopg.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from psycopg_pool.base import AttemptWithBackoff

from controller.gateways.postgres_sql import (
    adapt,
    check_idle_connection,
    queries,
    role_of,
    translated,
)
from controller.gateways.retry import retry_transient
from controller.model.records import Event, Fence, StatusChange, StatusWrite

T = TypeVar("T")


# psycopg_pool retries a lost connection with an exponential backoff (1, 2, 4, 8, 16 s...
# until `reconnect_timeout`): after a 20 s outage its next attempt came up to 10 s after
# Postgres answered again, and everything waiting on the pool with it, the election's
# data-plane check included (a leader 9.45 s after Postgres was back; the goal is 2 s).
# Berth retries every half second instead: a failed connect costs next to nothing, and
# `connect_timeout` bounds one to a host that does not answer.
AttemptWithBackoff.INITIAL_DELAY = 0.5
AttemptWithBackoff.DELAY_BACKOFF = 1.0


def events_json(events: Sequence[Event]) -> Jsonb:
    """Events as one JSON array, in their order (schema 24's `berth_insert_events`)."""
    return Jsonb([event.__dict__ for event in events])


def fenced_write_params(
    fence: Fence,
    status: StatusWrite | None,
    events: Sequence[Event] = (),
    create_row: bool = False,
) -> dict[str, Any]:
    """The parameters of schema 26's `berth_fenced_write` (and `berth_commit_intent`): the
    fence, the status row (None: none written), made first when `create_row`, and the
    events. The row as `jsonb_populate_record` of a status row reads it: times as ISO text,
    phases as their names."""
    row = None
    if status is not None:
        row = {
            key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in status.__dict__.items()
        }
    return {
        "cluster": fence.cluster,
        "term": fence.term,
        "node_id": fence.node_id,
        "status": Jsonb(row) if row is not None else None,
        "create_row": create_row,
        "events": events_json(events),
    }


def change_params(fence: Fence, change: StatusChange | None) -> dict[str, Any]:
    """`fenced_write_params` of what a writer staged (None: the fence alone)."""
    if change is None:
        return fenced_write_params(fence, None)
    return fenced_write_params(fence, change.status, change.events, change.create_row)


class PoolOps:
    """Statements run through a pool (timed, translated, retried when transient), and the
    fenced-transaction plumbing: what every store shares."""

    _pool: ConnectionPool[Any]
    role: str
    acquire_timeout_s: float

    @retry_transient
    def _run(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with (
            translated(query, role=self.role),
            self._pool.connection(timeout=self.acquire_timeout_s) as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            cursor.execute(queries()[query], adapt(params or {}))
            return cursor.fetchall() if cursor.description else []

    def _in_transaction(self, operation: str, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run `work` in one transaction, retried whole on transient errors."""
        return cast(T, self._retried_transaction(operation, work))

    @retry_transient
    def _retried_transaction(
        self, operation: str, work: Callable[[psycopg.Connection[Any]], T]
    ) -> T:
        with (
            translated(operation, role=self.role),
            self._pool.connection(timeout=self.acquire_timeout_s) as conn,
            conn.transaction(),
        ):
            return work(conn)  # Deposed raised inside rolls the transaction back

    @staticmethod
    def _fence(conn: psycopg.Connection[Any], fence: Fence) -> None:
        """Inside a transaction: hold the term row shared, or raise Deposed if it moved on
        or another holder has it (the same term number granted again after a failover):
        schema 26's `berth_hold_term`, whose SQLSTATE `translated` turns into Deposed."""
        PoolOps._fenced_write(conn, fence, None)

    @staticmethod
    def _fenced_write(
        conn: psycopg.Connection[Any], fence: Fence, change: StatusChange | None
    ) -> None:
        """Inside a transaction: the fence (as `_fence`), then `change`'s status row and
        events, in one statement (schema 26's `berth_fenced_write`)."""
        conn.execute(queries()["fenced_write"], change_params(fence, change))
        fence.check_trust()

    @staticmethod
    def _insert_events(
        conn: psycopg.Connection[Any], fence: Fence, events: Sequence[Event]
    ) -> None:
        if events:  # one statement for them all
            params = {"events": events_json(events), "leader_term": fence.term}
            conn.execute(queries()["insert_events"], params)


class Pool(PoolOps):
    """A small connection pool of one process role."""

    def __init__(
        self,
        url: str,
        pool_size: int = 4,
        idle_in_transaction_s: float = 10.0,
        application_name: str = "berth",
        acquire_timeout_s: float = 10.0,
    ) -> None:
        self.url = url
        # How long a call waits for a connection: the loop rides out a restart; the API
        # answers 503 sooner (its callers retry after `Retry-After`).
        self.acquire_timeout_s = acquire_timeout_s
        self.role = role_of(url)
        # A leader paused inside a fenced transaction holds the term row, and a new leader's
        # claim waits for it: Postgres ends such a session after this long idle in it. No
        # Docker call is made inside a transaction, so a few seconds is plenty.
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
                "application_name": application_name,
            },
            check=check_idle_connection,
            open=False,
            name="berth",
        )
        with translated("connect"):
            self._pool.open(wait=True, timeout=15)

    def close(self) -> None:
        self._pool.close()


class Store(PoolOps):
    """A store by concern: its statements run through the pool it is given (shared)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self._pool = pool._pool
        self.role = pool.role
        self.acquire_timeout_s = pool.acquire_timeout_s
