"""The mutation log: an intent before each runtime call and its outcome after, fenced.

Called by the loop through `controller.loop.ports.MutationLog`: the status writer wraps
every runtime mutation in `mutation`, and a new leader's first resync resolves what earlier
terms left unfinished (`unfinished_intents`, `resolve_intent`). See RECONCILIATION.md,
"What a deposed leader can still do, and what the mutation log proves".
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from controller.gateways.postgres_pool import Store, change_params
from controller.gateways.postgres_sql import (
    queries,
)
from controller.model.errors import (
    DatabaseRejected,
    DatabaseUnavailable,
)
from controller.model.records import (
    Event,
    Fence,
    Intent,
    MutationAction,
    MutationRecord,
    Resolution,
    StatusChange,
)


class MutationStore(Store):
    """`berth_mutations` and `berth_containers`: what Berth did to the runtime, and made."""

    _proof_key: bytes | None = None

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
        self,
        fence: Fence,
        deployment: str,
        action: MutationAction,
        target: str,
        status: StatusChange | None = None,
    ) -> Iterator[MutationRecord]:
        """Record one Docker mutation around the call, holding no transaction during it:

        1. a committed, fenced intent (the term row is held `FOR SHARE` for this short
           transaction only, so a new leader's claim never waits on a Docker call);
        2. the trust window checked right before the call (Deposed: not made, `fenced`);
        3. the call itself, the body of the `with`;
        4. the outcome with the body's events, in one short transaction. Not fenced: it
           records what was done, whoever leads by then.
        A crash between 1 and 4 leaves the outcome NULL; the next leader resolves it against
        Docker (`resolve_intent`). `status`, a status row and its events, is written in the
        intent's transaction (the phase the call belongs to, in the same commit)."""
        params = {
            **change_params(fence, status),
            "deployment": deployment,
            "action": action,
            "target": target,
        }
        fence.check_trust()
        # One statement, its own transaction (schema 26's `berth_commit_intent`).
        intent_id = int(self._run("commit_intent", params)[0]["id"])
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
        """The outcome, the container made or removed and the events: one statement, which
        is its own transaction (no BEGIN and COMMIT round trips)."""
        params = {
            "id": intent_id,
            "outcome": outcome,
            "called_at": called_at,
            "created": record.created,
            "removed": record.removed,
            "deployment": deployment,
            "target": target,
            "term": fence.term,
            "events": [event.__dict__ for event in record.events],
        }
        self._run("finish_mutation", params)

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

    def proof_key(self) -> bytes:
        """The key of Berth's creation proofs (schema 21), read once: it never changes."""
        if self._proof_key is None:
            rows = self._run("select_proof_key", {})
            if not rows:
                raise DatabaseRejected("berth_proof_key has no row: run `berth migrate`")
            self._proof_key = bytes.fromhex(str(rows[0]["key"]))
        return self._proof_key

    def record_again(
        self, fence: Fence, deployment: str, replicas: Sequence[tuple[str, str]], event: Event
    ) -> None:
        """Write again the creation records the database lost of Berth's own replicas
        (`replicas`: id and name each, their proof checked), with one event; fenced."""

        def work(conn: psycopg.Connection[Any]) -> None:
            self._fence(conn, fence)
            for replica_id, name in replicas:
                self._record_container(conn, fence, replica_id, deployment, name)
            self._insert_events(conn, fence, [event])

        self._in_transaction("record_again", work)

    def prune_mutations(self, older_than_s: float) -> None:
        self._run("prune_mutations", {"older_than_s": older_than_s})
