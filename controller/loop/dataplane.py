"""The data-plane guard: may this replica lead? Asked by leadership before it stands for
election and again once it holds the lock, and by the probes and the node report.

A check claims this replica's engine for its database (the docker runtime's marker) and the
engine for its cluster (in Postgres), then asks the pure `controller.policy.dataplane`. The
verdict is kept `FRESH_S` seconds, so that a standby that wins the lock pays nothing more
for it. A check that cannot be made (the engine or Postgres not answering) is a refusal too,
of its own kind: a replica never leads a data plane it could not verify. Every verdict sets
`berth_data_plane_refused{reason}`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from controller.loop.ports import ClusterClaims, EngineClaims
from controller.model.claims import ClusterEngine, Refusal, RefusalKind
from controller.model.errors import BerthError
from controller.observability.metrics import DATA_PLANE_REFUSED
from controller.policy.dataplane import refusal

log = structlog.get_logger("berth.dataplane")
FRESH_S = 5.0


class DataPlaneGuard:
    def __init__(
        self,
        cluster: str,
        host: str,
        database: ClusterClaims,
        engine: EngineClaims,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster = cluster
        self.host = host
        self.database = database
        self.engine = engine
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._verdict: Refusal | None = None
        self._checked_at: float | None = None

    def refusal(self) -> Refusal | None:
        """Why this replica may not lead now (None: it may), checked at most every FRESH_S."""
        with self._lock:
            fresh = self._checked_at is not None and self._monotonic() - self._checked_at < FRESH_S
            if fresh:
                return self._verdict
        return self.check()

    def last(self) -> Refusal | None:
        """The last verdict, without a check: for the probes, which must answer at once."""
        with self._lock:
            return self._verdict

    def check(self) -> Refusal | None:
        try:
            database_id = self.database.installation_id()
            marker = self.engine.claim_engine(self.cluster, database_id)
            # Only an engine this database claimed may become the cluster's engine: another
            # database's claim is refused before anything is recorded here.
            recorded = (
                self.database.claim_cluster_engine(self.cluster, marker.engine_id, self.host)
                if marker.database_id == database_id
                else ClusterEngine(marker.engine_id, "")
            )
            verdict = refusal(self.cluster, database_id, marker, recorded)
        except BerthError as error:
            verdict = Refusal(
                RefusalKind.UNVERIFIED, f"could not verify this replica's data plane: {error}"
            )
        with self._lock:
            changed = verdict != self._verdict or self._checked_at is None
            self._verdict, self._checked_at = verdict, self._monotonic()
        for kind in RefusalKind:
            DATA_PLANE_REFUSED.labels(reason=str(kind)).set(
                1 if verdict is not None and verdict.kind == kind else 0
            )
        if changed and verdict is not None:
            log.warning("refusing to lead", reason=str(verdict.kind), why=verdict.message)
        elif changed:
            log.info("data plane verified: this replica may lead", cluster=self.cluster)
        return verdict
