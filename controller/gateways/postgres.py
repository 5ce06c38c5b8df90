"""The Postgres gateway: one method per use of the database.

Called by the loop (desired state, status and events, fenced mutations, stuck marks,
intents), the daemon (migrations at start, node reports, probes) and the CLI. Only the
gateways import psycopg. The pool and fenced transactions are `postgres_pool.Pool`, its
base; SQL lives in `sql/queries.sql` (named queries) and `sql/migrations/`, loaded and its
driver errors translated by `controller.gateways.postgres_sql`.
The sessions that must not be pooled (election lock, LISTEN) are in
`controller.gateways.lock_session`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from controller.gateways.postgres_api import ApiStore
from controller.gateways.postgres_builds import BuildStore
from controller.gateways.postgres_retention import RetentionStore
from controller.gateways.postgres_revisions import RevisionStore
from controller.gateways.postgres_sql import (
    MIGRATION_LOCK_NAME,
    adapt,
    advisory_key,
    migrations,
    queries,
    translated,
)
from controller.gateways.retry import retry_transient
from controller.model.errors import (
    DatabaseRejected,
    DatabaseUnavailable,
    PermissionDenied,
    SchemaMissing,
)
from controller.model.records import (
    DeploymentRecord,
    Event,
    Fence,
    Intent,
    MutationAction,
    MutationRecord,
    Resolution,
    StatusWrite,
)


class Database(ApiStore, RevisionStore, BuildStore, RetentionStore):
    """One method per use of the database; every method is retried when transient."""

    # --- schema -----------------------------------------------------------------------
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

    def ping(self, timeout_s: float = 0.5) -> None:
        """One `SELECT 1`, not retried, waiting at most `timeout_s` for a connection: for
        probes, which must answer at once whatever Postgres does."""
        with (
            translated("ping"),
            self._pool.connection(timeout=timeout_s) as conn,
        ):
            conn.execute(queries()["ping"])

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

    # --- desired state ----------------------------------------------------------------
    def fetch_all(self) -> list[DeploymentRecord]:
        return [DeploymentRecord.from_row(row) for row in self._run("select_deployments")]

    def fetch_one(self, name: str) -> DeploymentRecord | None:
        rows = self._run("select_deployment", {"name": name})
        return DeploymentRecord.from_row(rows[0]) if rows else None

    def secret_values(self, names: Collection[str]) -> dict[str, str]:
        """The values of these secrets (the daemon's role alone may read them)."""
        if not names:
            return {}
        rows = self._run("select_secret_values", {"names": sorted(names)})
        return {str(row["name"]): str(row["value"]) for row in rows}

    def upsert_deployment(self, spec: dict[str, Any]) -> tuple[int, bool]:
        rows = self._run("upsert_deployment", spec)
        return int(rows[0]["generation"]), bool(rows[0]["inserted"])

    def delete_deployment(self, name: str) -> bool:
        return bool(self._run("delete_deployment", {"name": name}))

    # --- observed state: every write is fenced by the leader's term ----------------------
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
                conn.execute(queries()["write_status"], adapt(params))
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
    def _record_container(
        conn: psycopg.Connection[Any], fence: Fence, container_id: str, deployment: str, name: str
    ) -> None:
        params = {
            "container_id": container_id,
            "deployment": deployment,
            "name": name,
            "term": fence.term,
        }
        conn.execute(queries()["record_container"], params)

    @contextmanager
    def mutation(
        self, fence: Fence, deployment: str, action: MutationAction, target: str
    ) -> Iterator[MutationRecord]:
        """Record one Docker mutation around the call, holding no transaction during it:

        1. a committed, fenced intent (the term row is held `FOR SHARE` for this short
           transaction only, so a new leader's claim never waits on a Docker call);
        2. the trust window checked right before the call (Deposed: not made, `fenced`);
        3. the call itself, the body of the `with`;
        4. the outcome with the body's events, in one short transaction. Not fenced: it
           records what was done, whoever leads by then.
        A crash between 1 and 4 leaves the outcome NULL; the next leader resolves it against
        Docker (`resolve_intent`)."""
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
            return int(row["id"])

        intent_id = self._in_transaction("intent", commit_intent)
        record = MutationRecord()
        outcome, called_at = "fenced", None
        try:
            fence.check_trust()
            outcome, called_at = "error", time.time()
            yield record
        except Exception:
            with contextlib.suppress(DatabaseUnavailable, DatabaseRejected):
                # (if this fails too, the next leader resolves the intent against Docker)
                self._finish_intent(fence, intent_id, outcome, called_at, MutationRecord())
            raise
        self._finish_intent(fence, intent_id, "ok", called_at, record, deployment, target)

    def _finish_intent(
        self,
        fence: Fence,
        intent_id: int,
        outcome: str,
        called_at: float | None,
        record: MutationRecord,
        deployment: str = "",
        target: str = "",
    ) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            params = {"id": intent_id, "outcome": outcome, "called_at": called_at}
            conn.execute(queries()["finish_intent"], params)
            if record.created is not None:
                self._record_container(conn, fence, record.created, deployment, target)
            if record.removed is not None:
                conn.execute(queries()["forget_container"], {"container_id": record.removed})
            self._insert_events(conn, fence, record.events)

        self._in_transaction("mutation", work)

    def unfinished_intents(self, fence: Fence) -> list[Intent]:
        """Mutations of earlier terms left without an outcome and not yet resolved."""
        rows = self._run(
            "select_unfinished_intents", {"cluster": fence.cluster, "term": fence.term}
        )
        return [
            Intent(
                row["id"],
                row["term"],
                row["deployment"],
                MutationAction(row["action"]),
                row["target"],
            )
            for row in rows
        ]

    def resolve_intent(
        self,
        fence: Fence,
        intent: Intent,
        resolution: Resolution,
        event: Event,
        created: str | None = None,
    ) -> None:
        """Record what Docker showed of an unfinished intent, with its event (and, for a
        create found done, the container it made); fenced."""

        def work(conn: psycopg.Connection[Any]) -> None:
            self._fence(conn, fence)
            params = {"id": intent.id, "resolution": resolution, "term": fence.term}
            conn.execute(queries()["resolve_intent"], params)
            if created is not None:
                self._record_container(conn, fence, created, intent.deployment, intent.target)
            self._insert_events(conn, fence, [event])

        self._in_transaction("resolve_intent", work)

    def prune_mutations(self, older_than_s: float) -> None:
        self._run("prune_mutations", {"older_than_s": older_than_s})

    def release_holds(self, fence: Fence, permanent_only: bool = False) -> list[str]:
        """Make failed deployments due now (all: the engine came back; permanent ones only:
        an image appeared); their names."""

        def work(conn: psycopg.Connection[Any]) -> list[str]:
            self._fence(conn, fence)
            params = {"permanent_only": permanent_only}
            return [row["name"] for row in conn.execute(queries()["release_holds"], params)]

        return self._in_transaction("release_holds", work)

    def mark_stuck(self, fence: Fence, name: str, generation: int, event: Event) -> None:
        """Count one more stuck-and-resumed time for `generation`, with its event."""

        def work(conn: psycopg.Connection[Any]) -> None:
            self._fence(conn, fence)
            conn.execute(queries()["mark_stuck"], {"name": name, "generation": generation})
            self._insert_events(conn, fence, [event])

        self._in_transaction("mark_stuck", work)

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

    def overview_json(self) -> str:
        """The overview as a JSON array (text), serialised by Postgres."""
        return str(self._run("select_overview_json")[0]["items"])

    def spec_row(self, name: str) -> dict[str, Any] | None:
        rows = self._run("select_spec", {"name": name})
        return rows[0] if rows else None

    def status_row(self, name: str) -> dict[str, Any] | None:
        rows = self._run("select_status", {"name": name})
        return rows[0] if rows else None

    def events(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        return self._run("select_events", {"name": name, "limit": limit})
