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

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from controller.model.names import LABEL_CLUSTER, LABEL_DATABASE, LABEL_ENGINE

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

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> EngineClaim | None:
        """The claim an object's labels hold; None when they are not Berth's claim."""
        engine, database = labels.get(LABEL_ENGINE), labels.get(LABEL_DATABASE)
        return cls(str(engine), str(database)) if engine and database else None


def claim_labels(cluster: str, engine_id: str, database_id: str) -> dict[str, str]:
    """The labels of a claim on an engine (a volume) or a swarm (a config)."""
    return {LABEL_CLUSTER: cluster, LABEL_ENGINE: engine_id, LABEL_DATABASE: database_id}


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
