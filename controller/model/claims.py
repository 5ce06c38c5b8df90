"""Who manages a data plane: the claim a Berth database writes on a Docker engine, and why
a replica refuses to lead.

Pure data. The engine's side is a marker Berth writes there (a labelled volume, read by
`controller.gateways.docker_runtime`: `docker info`'s ID is not unique across engines
made from one image), the database's side the cluster's engine
(`berth_cluster_engines`, `controller.gateways.postgres_claims`); the pure verdict is
`controller.policy.dataplane.refusal`, asked by `controller.loop.dataplane` before this
replica may lead.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# The marker's volume: a dot cannot occur in the names of deployments' volumes (DNS labels).
CLAIM_VOLUME_PREFIX = "berth.claim."


def claim_volume(cluster: str) -> str:
    return f"{CLAIM_VOLUME_PREFIX}{cluster}"


@dataclass(frozen=True)
class EngineClaim:
    """The marker on an engine: the engine's own id (made by the first Berth to claim it)
    and the Berth database (installation) that claimed it for this cluster."""

    engine_id: str
    database_id: str


@dataclass(frozen=True)
class ClusterEngine:
    """The engine a cluster runs on, as its database recorded at the first claim."""

    engine_id: str
    claimed_by_host: str


class RefusalKind(StrEnum):
    """Why a replica may not lead (the label `reason` of berth_data_plane_refused)."""

    OTHER_DATABASE = "other_database"  # the engine belongs to another Berth database
    OTHER_ENGINE = "other_engine"  # the cluster runs on another engine than this replica's
    UNVERIFIED = "unverified"  # the engine or the database did not answer the check


@dataclass(frozen=True)
class Refusal:
    kind: RefusalKind
    message: str
