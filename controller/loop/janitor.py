"""The janitor: the leader's periodic clean-up of what Berth made and no longer needs.

Scheduled by the daemon every BERTH_RETENTION_INTERVAL_S; does nothing on a follower. One
sweep prunes old deployment events and build log lines (by age and by count per
deployment, BERTH_EVENTS_* and BERTH_BUILD_LOGS_*), removes the networks Berth made that no
deployment declares and no container uses, and the images Berth built for deployments
deleted since; with a registry (BERTH_REGISTRY), the pushed manifests retention no longer
keeps (`policy.registry`), then the registry's garbage collection when any went. The
images of a live deployment are pruned by the build dispatcher
(BERTH_IMAGE_RETENTION), named volumes when their deployment is deleted (unless retained),
containers by the reconciler. Everything removed here is found by
Berth's labels and the cluster's name first: nothing Berth did not make is touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from controller.loop.ports import (
    BuiltImages,
    FenceSource,
    RegistryPort,
    RetentionPort,
    StorageEngine,
)
from controller.model.errors import BerthError, Deposed
from controller.model.names import build_repository, network_name
from controller.model.settings import Settings
from controller.observability.metrics import CLEANUP_REMOVED
from controller.policy.registry import manifests_to_delete

log = structlog.get_logger("berth.janitor")


@dataclass(frozen=True)
class Swept:
    events: int = 0
    build_log_lines: int = 0
    networks: tuple[str, ...] = ()
    images: int = 0
    manifests: int = 0


class Janitor:
    def __init__(
        self,
        settings: Settings,
        store: RetentionPort,
        storage: StorageEngine,
        leadership: FenceSource,
        images: BuiltImages,
        registry: RegistryPort | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self.storage = storage
        self.images = images
        self.leadership = leadership

    def sweep(self) -> Swept | None:
        """One clean-up if this replica leads; None otherwise or when it failed (logged:
        the next sweep tries again)."""
        try:
            self.leadership.fence()
        except Deposed:
            return None
        try:
            swept = self._sweep()
        except BerthError as error:
            log.warning("clean-up failed", error=str(error))
            return None
        CLEANUP_REMOVED.labels(kind="events").inc(swept.events)
        CLEANUP_REMOVED.labels(kind="build_log_lines").inc(swept.build_log_lines)
        CLEANUP_REMOVED.labels(kind="networks").inc(len(swept.networks))
        CLEANUP_REMOVED.labels(kind="images").inc(swept.images)
        CLEANUP_REMOVED.labels(kind="registry_manifests").inc(swept.manifests)
        if swept != Swept():
            log.info(
                "cleaned up",
                events=swept.events,
                build_log_lines=swept.build_log_lines,
                networks=list(swept.networks),
                images=swept.images,
                registry_manifests=swept.manifests,
            )
        return swept

    def _sweep(self) -> Swept:
        settings = self.settings
        events = self.store.prune_events(
            settings.events_max_age_s, settings.events_max_per_deployment
        )
        lines = self.store.prune_build_logs(
            settings.build_logs_max_age_s, settings.build_logs_max_builds
        )
        wanted = {
            network_name(network, settings.cluster) for network in self.store.declared_networks()
        }
        removed = tuple(
            name
            for name in self.storage.unused_networks(settings.cluster, wanted)
            if self.storage.remove_network(name, settings.cluster)
        )
        images = self._remove_deleted_deployments_images()
        return Swept(events, lines, removed, images, self._prune_registry())

    def _prune_registry(self) -> int:
        """Delete the registry's manifests of Berth's that retention no longer keeps; then,
        if any went, collect the registry's garbage (frees their layers' disk)."""
        if self.registry is None:
            return 0
        images = self.store.registry_images(self.settings.image_retention)
        deleted = sum(
            1
            for repository, digest in manifests_to_delete(images, self.settings.registry)
            if self.registry.delete(repository, digest)
        )
        if deleted:
            outcome = self.registry.collect_garbage()
            log.info("registry pruned", manifests=deleted, garbage_collection=outcome or "off")
        return deleted

    def _remove_deleted_deployments_images(self) -> int:
        """Images Berth built for deployments deleted since: one list of every built image,
        whatever the number of deleted deployments, matched by repository name."""
        cluster = self.settings.cluster
        deleted = {
            build_repository(deployment, cluster): deployment
            for deployment in self.store.deleted_built_deployments()
        }
        if not deleted:
            return 0
        removed = 0
        for image in self.images.every_built_image():
            tags = image.get("RepoTags")
            names = (
                {str(tag).rsplit(":", 1)[0] for tag in tags} if isinstance(tags, list) else set()
            )
            for repository in sorted(names & deleted.keys()):
                removed += self.images.remove_built(image, deleted[repository], cluster)
        return removed
