"""The runtime's nodes in Postgres: what the leader observed (`cluster_nodes`, read through
the `nodes` view) and what an operator wants of them (`wanted_availability`).

Called by `controller.loop.nodes.NodeKeeper` (through `controller.loop.ports.NodeLog`) at
every full resync, and by the CLI (`berth nodes`, `berth node drain|activate`). Every
write of the leader is fenced by its term.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from controller.gateways.postgres_pool import Store
from controller.gateways.postgres_sql import queries
from controller.model.nodes import Availability, NodeWish, ObservedNode
from controller.model.records import Fence


class NodeStore(Store):
    def record_nodes(self, fence: Fence, nodes: list[ObservedNode]) -> None:
        """Upsert the nodes the runtime reports and drop those it no longer does."""
        rows = [
            {
                "node_id": n.id,
                "name": n.name,
                "address": n.address,
                "role": n.role,
                "availability": str(n.availability),
                "state": str(n.state),
                "labels": dict(n.labels),
                "engine_version": n.engine_version,
            }
            for n in nodes
        ]

        def work(conn: psycopg.Connection[Any]) -> None:
            self._fence(conn, fence)
            params = {"cluster": fence.cluster, "nodes": Jsonb(rows)}
            conn.execute(queries()["record_nodes"], params)
            kept = {"cluster": fence.cluster, "kept": [n.id for n in nodes]}
            conn.execute(queries()["forget_nodes"], kept)

        self._in_transaction("record_nodes", work)

    def node_wishes(self, cluster: str) -> list[NodeWish]:
        return [
            NodeWish(
                str(r["node_id"]),
                str(r["name"]),
                Availability(r["wanted_availability"]),
                str(r["note"]),
            )
            for r in self._run("select_node_wishes", {"cluster": cluster})
        ]

    def note_node(self, fence: Fence, node_id: str, note: str) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            self._fence(conn, fence)
            params = {"cluster": fence.cluster, "node_id": node_id, "note": note}
            conn.execute(queries()["note_node"], params)

        self._in_transaction("note_node", work)

    def nodes(self, cluster: str) -> list[dict[str, Any]]:
        return self._run("select_cluster_nodes", {"cluster": cluster})

    def want_availability(self, cluster: str, node: str, wanted: Availability | None) -> list[str]:
        """Ask the leader to drain, pause or activate a node (by name, hostname or id);
        the names of the nodes matched."""
        params = {
            "cluster": cluster,
            "node": node,
            "wanted": None if wanted is None else str(wanted),
        }
        return [str(r["name"]) for r in self._run("want_availability", params)]

    def replicas(self, deployment: str | None = None) -> list[dict[str, Any]]:
        return self._run("select_replicas", {"deployment": deployment})
