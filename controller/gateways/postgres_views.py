"""Reads for people and probes: the overview, a row, events, the leader and the nodes.

Called by the CLI (`berth get`, `describe`, `status`), the API's routes, the daemon's node
reporter and `/status`. Reads only, but for the node report each replica writes about
itself.
"""

from __future__ import annotations

from typing import Any

from controller.gateways.postgres_pool import Store


class ViewStore(Store):
    """The views and rows operators read; the node reports."""

    def report_node(self, node: dict[str, Any]) -> None:
        self._run("upsert_node", node)

    def cluster_snapshot(self, cluster: str) -> dict[str, Any]:
        """The leader and how many deployments are in each phase (the `/status` probe)."""
        phases: dict[str, int] = {}
        for row in self.overview():
            phases[row["phase"]] = phases.get(row["phase"], 0) + 1
        return {"leader": self.leader(cluster), "phases": phases}

    def leader(self, cluster: str) -> dict[str, Any] | None:
        rows = self._run("select_leader", {"cluster": cluster})
        return rows[0] if rows else None

    def nodes(self, cluster: str, within_s: float = 30.0) -> list[dict[str, Any]]:
        return self._run("select_nodes", {"cluster": cluster, "within_s": within_s})

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
