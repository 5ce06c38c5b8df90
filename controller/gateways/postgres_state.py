"""The loop's state stores: desired state in, status out.

`DesiredStore` reads the deployments (one query for all, one for one, secret values for
the daemon's role) and writes whole rows for `berth apply`; `StatusStore` writes status rows
and their events, each write fenced by the leader's term (see RECONCILIATION.md,
"Leadership and fencing"), marks stuck phases and releases failure holds. Called by the
loop through `controller.loop.ports.DesiredState` and `StatusLog`, and by the CLI.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import psycopg

from controller.gateways.postgres_pool import Store, fenced_write_params
from controller.gateways.postgres_sql import (
    queries,
)
from controller.model.records import (
    DeploymentRecord,
    Event,
    Fence,
    StatusWrite,
)


class DesiredStore(Store):
    """The deployments as declared, with their status and records joined."""

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


class StatusStore(Store):
    """Status rows and their events: every write fenced by the leader's term."""

    def record(
        self,
        fence: Fence,
        status: StatusWrite | None,
        events: Sequence[Event] = (),
        create_row: bool = False,
    ) -> None:
        """Write a status row and its events atomically, only while `fence.term` is current;
        `create_row` first inserts the row of a deployment seen for the first time. One
        statement, its own transaction (schema 26's `berth_fenced_write`)."""
        fence.check_trust()
        params = fenced_write_params(fence, status, events, create_row)
        self._run("fenced_write", params)

    def forget(self, fence: Fence, name: str, events: Sequence[Event] = ()) -> None:
        """Drop the status row of a deleted deployment whose containers are gone."""

        def work(conn: psycopg.Connection[Any]) -> None:
            self._fence(conn, fence)
            conn.execute(queries()["delete_status"], {"name": name})
            self._insert_events(conn, fence, events)

        self._in_transaction("forget", work)

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
