"""The database's side of one data plane per cluster: this Berth database's own id, and the
engine each cluster runs on.

Called by `controller.loop.dataplane` (through `controller.loop.ports.ClusterClaims`)
before this replica may lead. `berth_installation` holds one id, made by migration 17;
`berth_cluster_engines` the engine a cluster was first claimed on (kept until an operator
deletes the row: moving a cluster to another engine is a decision, not an accident).
"""

from __future__ import annotations

from typing import Any

import psycopg

from controller.gateways.postgres_pool import Store
from controller.gateways.postgres_sql import queries
from controller.model.claims import ClusterEngine


class ClaimStore(Store):
    def installation_id(self) -> str:
        return str(self._run("select_installation")[0]["id"])

    def claim_cluster_engine(self, cluster: str, engine_id: str, host: str) -> ClusterEngine:
        """The cluster's engine: this one if the cluster had none yet, else the first."""

        def work(conn: psycopg.Connection[Any]) -> ClusterEngine:
            params = {"cluster": cluster, "engine_id": engine_id, "host": host}
            conn.execute(queries()["claim_cluster_engine"], params)
            row = conn.execute(queries()["select_cluster_engine"], params).fetchone()
            assert row is not None
            return ClusterEngine(str(row["engine_id"]), str(row["claimed_by_host"]))

        return self._in_transaction("claim_cluster_engine", work)
