"""The Postgres gateway: one pool, and the stores by concern that share it.

`Database` is opened once per process role (the daemon's, the API's, a CLI command's) and
holds the pool and one store per concern: `schema` (migrations, probes, plain SQL),
`deployments` (desired state), `status` (status rows, fenced), `mutations` (the fenced
mutation log), `views` (what people read), `api`, `builds`, `revisions`, `retention` and
`claims` (one data plane per cluster).
The loop reaches them through its ports (`controller.loop.ports`), each store the port
of its concern. SQL lives in `sql/queries.sql` (named queries) and `sql/migrations/`,
loaded and its driver errors translated by `controller.gateways.postgres_sql`. The
sessions that must not be pooled (election lock, LISTEN) are in
`controller.gateways.lock_session`. Only the gateways import psycopg.
"""

from __future__ import annotations

from controller.gateways.postgres_api import ApiStore
from controller.gateways.postgres_builds import BuildStore
from controller.gateways.postgres_certificates import CertificateStore
from controller.gateways.postgres_claims import ClaimStore
from controller.gateways.postgres_mutations import MutationStore
from controller.gateways.postgres_nodes import NodeStore
from controller.gateways.postgres_pool import Pool
from controller.gateways.postgres_retention import RetentionStore
from controller.gateways.postgres_revisions import RevisionStore
from controller.gateways.postgres_schema import SchemaStore
from controller.gateways.postgres_state import DesiredStore, StatusStore
from controller.gateways.postgres_views import ViewStore


class Database:
    """One pool and its stores by concern."""

    def __init__(
        self,
        url: str,
        pool_size: int = 4,
        idle_in_transaction_s: float = 10.0,
        application_name: str = "berth",
        acquire_timeout_s: float = 10.0,
    ) -> None:
        self.url = url
        self.pool = Pool(url, pool_size, idle_in_transaction_s, application_name, acquire_timeout_s)
        self.role = self.pool.role
        self.schema = SchemaStore(self.pool)
        self.deployments = DesiredStore(self.pool)
        self.status = StatusStore(self.pool)
        self.mutations = MutationStore(self.pool)
        self.views = ViewStore(self.pool)
        self.api = ApiStore(self.pool)
        self.builds = BuildStore(self.pool)
        self.revisions = RevisionStore(self.pool)
        self.retention = RetentionStore(self.pool)
        self.claims = ClaimStore(self.pool)
        self.nodes = NodeStore(self.pool)
        self.certificates = CertificateStore(self.pool)

    def close(self) -> None:
        self.pool.close()
