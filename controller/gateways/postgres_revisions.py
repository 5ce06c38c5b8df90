"""The Postgres gateway's revisions: what was rolled out, what serves, what was rolled back.

A base of `controller.gateways.postgres.Database`. Called by the reconciler (a deployment
became active on a new spec: `serve_revision`; a rollout was rolled back:
`record_rollback`), both fenced by the leader's term, and by the CLI (`revisions`,
`berth rollout history` and `undo`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from controller.gateways.postgres_pool import Store
from controller.gateways.postgres_sql import adapt, queries
from controller.model.records import Event, Fence, StatusChange


class RevisionStore(Store):
    @staticmethod
    def _insert(
        conn: psycopg.Connection[Any],
        deployment: str,
        generation: int,
        spec: dict[str, Any],
        spec_hash: str,
        image: str,
        outcome: str,
        reason: str = "",
    ) -> int:
        """A new revision (the next number) with this outcome; its number."""
        row = conn.execute(queries()["next_revision"], {"deployment": deployment}).fetchone()
        assert row is not None
        values = {
            "deployment": deployment,
            "revision": int(row["revision"]),
            "generation": generation,
            "spec": spec,
            "spec_hash": spec_hash,
            "image": image,
            "image_id": None,
            "outcome": outcome,
            "reason": reason,
        }
        conn.execute(queries()["insert_revision"], adapt(values))
        return int(row["revision"])

    def serve_revision(
        self,
        fence: Fence,
        deployment: str,
        generation: int,
        spec: dict[str, Any],
        spec_hash: str,
        image: str,
        status: StatusChange | None = None,
        note: Callable[[int], Event] | None = None,
    ) -> int:
        """This spec serves now: its revision (a new one unless it already serves) becomes
        `serving`, the one before `superseded`. Returns the serving revision. In the same
        transaction: `status` (the phase it serves in, with its events) and `note`'s event
        naming the revision."""
        params = {
            "deployment": deployment,
            "generation": generation,
            "spec": Jsonb(spec),
            "spec_hash": spec_hash,
            "image": image,
        }

        def work(conn: psycopg.Connection[Any]) -> int:
            self._fenced_write(conn, fence, status)
            row = conn.execute(queries()["serve_revision"], params).fetchone()
            assert row is not None
            revision = int(row["revision"])
            if note is not None:
                self._insert_events(conn, fence, [note(revision)])
            return revision

        return self._in_transaction("serve_revision", work)

    def record_rollback(
        self,
        fence: Fence,
        deployment: str,
        generation: int,
        spec: dict[str, Any],
        spec_hash: str,
        image: str,
        reason: str,
    ) -> int:
        """The rollout of this spec was rolled back: kept as a `rolled_back` revision."""

        def work(conn: psycopg.Connection[Any]) -> int:
            self._fence(conn, fence)
            return self._insert(
                conn, deployment, generation, spec, spec_hash, image, "rolled_back", reason
            )

        return self._in_transaction("record_rollback", work)

    def revisions(self, deployment: str, limit: int = 50) -> list[dict[str, Any]]:
        return self._run("select_revisions", {"deployment": deployment, "limit": limit})
