"""One data plane per cluster, decided: may this replica lead? Pure.

Called by `controller.loop.dataplane` with what the engine's marker says and what the
cluster's database recorded. Two splits are refused (RECONCILIATION.md, "One data plane"):
an engine claimed by another Berth database under the same cluster name (two installations
would delete each other's containers as orphans), and a replica whose engine is not the
cluster's (a new leader would start every deployment again on its own engine while the
old containers run on, unmanaged).
"""

from __future__ import annotations

from controller.model.claims import ClusterEngine, EngineClaim, Refusal, RefusalKind, claim_volume


def refusal(
    cluster: str, database_id: str, marker: EngineClaim, recorded: ClusterEngine
) -> Refusal | None:
    """None when this replica may lead: its engine is claimed by its own database and is
    the engine the cluster runs on."""
    if marker.database_id != database_id:
        return Refusal(
            RefusalKind.OTHER_DATABASE,
            f"this Docker engine is managed by another Berth database "
            f"({marker.database_id[:8]}) under cluster name {cluster!r}: this one touches "
            f"nothing. Give one of them another BERTH_CLUSTER, or, if that database is gone "
            f"for good, remove its claim (docker volume rm {claim_volume(cluster)})",
        )
    if recorded.engine_id != marker.engine_id:
        return Refusal(
            RefusalKind.OTHER_ENGINE,
            f"cluster {cluster!r} runs on Docker engine {recorded.engine_id[:8]} (claimed "
            f"from host {recorded.claimed_by_host}); this replica's engine is "
            f"{marker.engine_id[:8]}: it never leads. Point DOCKER_HOST at the cluster's "
            f"engine; several hosts need a runtime that spans them",
        )
    return None
