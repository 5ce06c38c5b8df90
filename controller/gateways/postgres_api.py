"""The Postgres gateway's HTTP API side: tokens, whole-deployment writes, pages of history.

A base of `controller.gateways.postgres.Database`. Called by the API's routes
(`controller.app.api_*`) and by `berth token`. A deployment written through the API goes
through `berth_checked_spec` and the row's own triggers, so the API refuses exactly what
`psql` would, with the same message naming the field. Tokens are kept as sha256 hashes.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.gateways.postgres_pool import Store
from controller.model.errors import Conflict, DatabaseRejected, NotFound

TOKEN_PREFIX = "berth_"
TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is a hint, not an audit log: few writes


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiStore(Store):
    # --- tokens -------------------------------------------------------------------------
    def create_token(self, name: str, scope: str) -> tuple[str, dict[str, Any]]:
        """A new random token (returned once, never stored) and its row."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        params = {"name": name, "scope": scope, "token_hash": token_hash(token)}
        try:
            rows = self._run("insert_token", params)
        except DatabaseRejected as error:
            if "duplicate key" in str(error):
                raise Conflict(
                    f"a token named {name!r} exists: revoke it or pick another name"
                ) from error
            raise
        return token, rows[0]

    def token_scope(self, token: str) -> tuple[str, str] | None:
        """(name, scope) of a valid, unrevoked token; None otherwise."""
        rows = self._run("select_token", {"token_hash": token_hash(token)})
        if not rows:
            return None
        row = rows[0]
        last = row["last_used_at"]
        if last is None or datetime.now(UTC) - last > TOUCH_EVERY:
            self._run("touch_token", {"id": row["id"]})
        return str(row["name"]), str(row["scope"])

    def tokens(self) -> list[dict[str, Any]]:
        return self._run("select_tokens")

    def revoke_token(self, name: str) -> None:
        if not self._run("revoke_token", {"name": name}):
            raise NotFound(f"no unrevoked token named {name!r}")

    # --- deployments, whole ---------------------------------------------------------------
    def create_deployment(self, name: str, spec: dict[str, Any]) -> int:
        """Insert a new deployment; Conflict if the name exists. Its generation."""
        rows = self._run("api_create_deployment", {"name": name, "spec": spec})
        if not rows:
            raise Conflict(f"deployment {name!r} exists: replace it (PUT) or patch it (PATCH)")
        return int(rows[0]["generation"])

    def replace_deployment(
        self, name: str, spec: dict[str, Any], expected_generation: int | None = None
    ) -> int:
        """Replace a deployment's spec; NotFound, or Conflict if it moved past
        `expected_generation`. Its generation now."""
        params = {"name": name, "spec": spec, "expected": expected_generation}
        rows = self._run("api_replace_deployment", params)
        if rows:
            return int(rows[0]["generation"])
        raise self._missing_or_moved(name, expected_generation)

    def delete_deployment_at(self, name: str, expected_generation: int | None = None) -> None:
        params = {"name": name, "expected": expected_generation}
        if not self._run("api_delete_deployment", params):
            raise self._missing_or_moved(name, expected_generation)

    def _missing_or_moved(self, name: str, expected: int | None) -> Exception:
        rows = self._run("select_generation", {"name": name})
        if not rows:
            return NotFound(f"deployment {name!r} not found")
        return Conflict(
            f"deployment {name!r} is at generation {rows[0]['generation']}, not {expected}: "
            "read it again and retry"
        )

    # --- pages ------------------------------------------------------------------------------
    def events_page(self, name: str, before: int | None, limit: int) -> list[dict[str, Any]]:
        """Events of a deployment, newest first, older than event id `before`."""
        return self._run("select_events_page", {"name": name, "before": before, "limit": limit})

    def build(self, build_id: int) -> dict[str, Any] | None:
        rows = self._run("select_build", {"id": build_id})
        return rows[0] if rows else None

    def cancel_build(self, build_id: int) -> dict[str, Any]:
        """Ask a queued or running build to stop; Conflict if it already ended."""
        rows = self._run("cancel_build", {"id": build_id})
        if rows:
            return rows[0]
        build = self.build(build_id)
        if build is None:
            raise NotFound(f"build {build_id} not found")
        raise Conflict(f"build {build_id} is {build['status']}: nothing to cancel")

    # --- the stream -------------------------------------------------------------------------
    def stream_changes(
        self, after: int, holes: list[int], deployment: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Changes with a stream sequence above `after` or in `holes`, oldest first."""
        params = {
            "since": min([after, *holes]) - 1 if holes else after,
            "after": after,
            "holes": "{" + ",".join(str(seq) for seq in holes) + "}",  # a bigint[] literal
            "deployment": deployment,
            "limit": limit,
        }
        return self._run("select_stream", params)

    def stream_head(self) -> int:
        return int(self._run("stream_head")[0]["seq"])

    # --- webhook deliveries -----------------------------------------------------------------
    def claim_deliveries(self, limit: int, lease_s: float) -> list[dict[str, Any]]:
        return self._run("claim_deliveries", {"limit": limit, "lease_s": lease_s})

    def finish_delivery(
        self,
        delivery_id: int,
        status: str,
        status_code: int | None,
        error: str | None,
        retry_in_s: float = 0.0,
    ) -> None:
        params = {
            "id": delivery_id,
            "status": status,
            "status_code": status_code,
            "error": error,
            "retry_in_s": retry_in_s,
        }
        self._run("finish_delivery", params)

    def next_delivery_due_s(self) -> float | None:
        value = self._run("next_delivery_due")[0]["due_in_s"]
        return None if value is None else float(value)
