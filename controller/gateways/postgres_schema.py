"""The schema store: migrations, the schema version, probes and an operator's plain SQL.

Called by the daemon (migrations at start, the readiness probe), `berth migrate`, the CLI's
schema check, and the tests and benchmarks (which act as operators, through plain SQL).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row

from controller.gateways.postgres_pool import Store
from controller.gateways.postgres_sql import (
    MIGRATION_LOCK_NAME,
    migrations,
    queries,
    translated,
)
from controller.gateways.retry import retry_transient
from controller.model.errors import (
    DatabaseRejected,
    PermissionDenied,
    SchemaMissing,
)
from controller.model.names import advisory_key
from controller.observability.metrics import DATABASE_READ_ONLY


class SchemaStore(Store):
    """The schema and probes; every method but `ping` is retried when transient."""

    @retry_transient
    def migrate(self, roles: Mapping[str, str] | None = None) -> list[int]:
        """Apply missing migrations in one transaction under an advisory lock; return them.
        `roles` names the database roles (operator, viewer, daemon, admin) for the
        migration that creates them (BERTH_ROLE_*)."""
        applied_now: list[int] = []

        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(queries()["lock_migrations"], {"key": advisory_key(MIGRATION_LOCK_NAME)})
            for kind, role in (roles or {}).items():
                conn.execute(
                    queries()["set_local_setting"], {"name": f"berth.role_{kind}", "value": role}
                )
            conn.execute(queries()["create_migrations_table"])
            done = {row["version"] for row in conn.execute(queries()["select_migrations"])}
            for version, name, sql in migrations():
                if version in done:
                    continue
                conn.execute(sql.encode())
                conn.execute(queries()["insert_migration"], {"version": version, "name": name})
                applied_now.append(version)

        with (
            translated("migrate", role=self.role),
            self._pool.connection(timeout=self.acquire_timeout_s) as conn,
            conn.transaction(),
        ):
            work(conn)
        return applied_now

    def ping(self, timeout_s: float = 0.5) -> dict[str, Any]:
        """Where this pool's connections go, and whether that server takes writes (a
        standby, or a read-only server, does not: DatabaseRejected naming it, and
        `berth_database_read_only` says so). Not retried, waiting at most `timeout_s` for
        a connection: for probes, which must answer at once whatever Postgres does, and
        for every command before it acts."""
        with (
            translated("ping"),
            self._pool.connection(timeout=timeout_s) as conn,
        ):
            row = conn.execute(queries()["ping"]).fetchone() or {}
            server = {
                "host": conn.info.host,
                "port": conn.info.port,
                "read_only": bool(row.get("read_only")),
                "in_recovery": bool(row.get("in_recovery")),
            }
        DATABASE_READ_ONLY.set(1 if server["read_only"] else 0)
        if server["read_only"]:
            what = "a standby in recovery" if server["in_recovery"] else "read-only"
            raise DatabaseRejected(
                f"the database at {server['host']}:{server['port']} is {what} and takes no "
                "writes: point BERTH_DATABASE_URL at the primary, or name every server with "
                "target_session_attrs=read-write (postgresql://a,b/berth?...)"
            )
        return server

    def check_schema(self) -> int:
        """The schema version, if this Berth can work with it; else SchemaMissing. Needs no
        more than the right to read: commands other than `berth migrate` and `berth run`
        never change the schema (a read-only role can use them)."""
        latest = migrations()[-1][0]
        try:
            version = self.schema_version()
        except PermissionDenied:
            raise
        except DatabaseRejected as error:
            if "does not exist" not in str(error):
                raise
            raise SchemaMissing(
                f"the database has no Berth schema (this Berth needs version {latest}): "
                "run `berth migrate` as a role that may create tables"
            ) from error
        if version < latest:
            raise SchemaMissing(
                f"the database schema is at version {version}, this Berth needs {latest}: "
                "run `berth migrate`"
            )
        return version

    def schema_version(self) -> int:
        rows = self._run("schema_version")
        return int(rows[0]["version"])

    @retry_transient
    def execute_sql(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        """An operator's SQL (the benchmarks and tests act as operators, through plain SQL);
        never used by the loop, whose every statement is a named query."""
        with (
            translated("sql", role=self.role),
            self._pool.connection(timeout=self.acquire_timeout_s) as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            cursor.execute(sql.encode(), params)
            return cursor.fetchall() if cursor.description else []
