"""Shared plumbing of the Postgres gateway: named queries, migrations, error translation.

Imported by `controller.gateways.postgres` (the pool), `controller.gateways.lock_session`
(the election session and LISTEN) and nothing else. SQL lives in `sql/queries.sql`
(named queries, each starting with `-- name: NAME`) and `sql/migrations/NNNN_*.sql`.
Driver errors become `DatabaseUnavailable` (transient) or `DatabaseRejected` (permanent,
carrying Postgres' own message, which names the field).
"""

from __future__ import annotations

import getpass
import os
import re
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from functools import cache
from importlib import resources
from typing import Any

import psycopg
import psycopg.errors
from psycopg.types.json import Jsonb
from psycopg_pool import PoolTimeout

from controller.model.errors import (
    DatabaseRejected,
    DatabaseUnavailable,
    Deposed,
    PermissionDenied,
)
from controller.observability.metrics import (
    POSTGRES_DURATION,
    POSTGRES_ERRORS,
    declare_postgres_operations,
)

NOTIFY_CHANNEL = "berth_deployments"
_QUERY_HEADER = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_MIGRATION_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")


MIGRATION_LOCK_NAME = "berth.migrations"
# Raised by schema 26's `berth_hold_term` when a fenced write's term is over or not this
# node's: translated to Deposed.
DEPOSED_SQLSTATE = "BF001"
# Operations timed besides the named queries (the label `operation` stays bounded).
OPERATIONS = (
    "connect",
    "migrate",
    "sql",
    "forget",
    "mutation",
    "resolve_intent",
    "release_holds",
    "mark_stuck",
    "lock_connect",
    "lock_acquire",
    "claim_term",
    "heartbeat",
    "listen",
    "enqueue_build",
    "claim_build",
    "build_heartbeat",
    "finish_build",
    "take_over_build",
    "store_archive",
    "serve_revision",
    "record_rollback",
)


@cache
def queries() -> dict[str, str]:
    """Named queries from sql/queries.sql."""
    text = resources.files("controller").joinpath("sql/queries.sql").read_text()
    parts = _QUERY_HEADER.split(text)
    names = parts[1::2]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:  # the second would silently replace the first
        raise RuntimeError(f"sql/queries.sql names these queries twice: {', '.join(twice)}")
    return {name: body.strip() for name, body in zip(names, parts[2::2], strict=True)}


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


def translate(error: Exception, role: str = "?") -> Exception:
    if isinstance(error, PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError):
        return DatabaseUnavailable(f"Postgres unavailable: {error}")
    if isinstance(error, psycopg.Error):
        diag = getattr(error, "diag", None)
        message = (diag.message_primary if diag is not None else None) or str(error)
        if isinstance(error, psycopg.errors.InsufficientPrivilege):
            return PermissionDenied(f"database role {role!r}: {message}")
        if error.sqlstate == DEPOSED_SQLSTATE:
            return Deposed(message)
        return DatabaseRejected(message)
    return error


@contextmanager
def translated(operation: str, timed: bool = True, role: str = "?") -> Iterator[None]:
    """Time one operation (bounded label: a query name or a fixed word) and translate errors."""
    started = time.perf_counter()
    try:
        yield
    except (psycopg.Error, PoolTimeout) as error:
        translated = translate(error, role)
        if not isinstance(translated, Deposed):  # the fence did its work: no database error
            kind = "transient" if isinstance(translated, DatabaseUnavailable) else "permanent"
            POSTGRES_ERRORS.labels(operation=operation, kind=kind).inc()
        raise translated from error
    finally:
        if timed:
            POSTGRES_DURATION.labels(operation=operation).observe(time.perf_counter() - started)


def role_of(url: str) -> str:
    """The database role a connection string logs in as (libpq's default: the OS user)."""
    try:
        user = psycopg.conninfo.conninfo_to_dict(url).get("user")
    except psycopg.Error:
        user = None
    return str(user or os.environ.get("PGUSER") or getpass.getuser())


def check_idle_connection(conn: psycopg.Connection[Any]) -> None:
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


def adapt(params: dict[str, Any]) -> dict[str, Any]:
    """Python values to query parameters: dicts and lists as jsonb (not `command`, a text
    array), enums as their value."""
    adapted: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, dict | list) and key != "command":
            value = Jsonb(value)
        adapted[key] = value
    return adapted
