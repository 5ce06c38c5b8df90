"""The Postgres gateway's retention side: old events and build logs, declared networks, the
built images retention keeps (for the registry).

A base of `controller.gateways.postgres.Database`. Called by the janitor
(`controller.loop.janitor`), on the leader, every BERTH_RETENTION_INTERVAL_S. Each prune is
one statement; deleting history is harmless to repeat, so it is not fenced.
"""

from __future__ import annotations

from controller.gateways.postgres_pool import Store


class RetentionStore(Store):
    def prune_events(self, max_age_s: float, keep: int) -> int:
        """Remove events older than `max_age_s` or past the newest `keep` of their
        deployment; how many went."""
        rows = self._run("prune_events", {"max_age_s": max_age_s, "keep": keep})
        return int(rows[0]["removed"])

    def prune_build_logs(self, max_age_s: float, keep: int) -> int:
        """Remove the log lines of finished builds older than `max_age_s` or past the
        newest `keep` finished builds of their deployment; how many lines went."""
        rows = self._run("prune_build_logs", {"max_age_s": max_age_s, "keep": keep})
        return int(rows[0]["removed"])

    def declared_networks(self) -> set[str]:
        """Every network some deployment declares (`deployments.networks`)."""
        return {str(row["network"]) for row in self._run("select_declared_networks")}

    def deleted_built_deployments(self) -> list[str]:
        """Deployments, deleted since, that Berth built images for."""
        rows = self._run("select_deleted_built_deployments")
        return sorted(str(row["deployment"]) for row in rows)

    def registry_images(self, retention: int) -> list[tuple[str, bool]]:
        """Every image Berth built, and whether retention keeps it (BERTH_IMAGE_RETENTION
        newest of a live deployment, or its serving revision's)."""
        rows = self._run("select_registry_images", {"retention": retention})
        return [(str(row["image"]), bool(row["kept"])) for row in rows]
