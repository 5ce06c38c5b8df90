"""What the janitor removes from the registry: pure, a function of the images Berth built.

Called by the janitor (`controller.loop.janitor`) when BERTH_REGISTRY is set. A build's
image is pinned in the registry as `registry/repository@sha256:...` (the build job pushes it
there). Retention is today's: the newest BERTH_IMAGE_RETENTION distinct images of each
deployment that exists, and its serving revision's, are kept (`select_registry_images`
says which); every other pinned manifest of Berth's is deleted, unless a kept image names
the same manifest (a rebuild of the same content gets the same digest). Only images the
`builds` table records, in Berth's build repositories of this registry, are ever named:
nothing else in the registry is touched.
"""

from __future__ import annotations

from collections.abc import Iterable

from controller.model.names import BUILD_REPOSITORY_PREFIX


def pinned_manifest(image: str, registry: str) -> tuple[str, str] | None:
    """(repository, digest) of an image pinned in `registry` in Berth's build namespace."""
    prefix = f"{registry}/"
    if not registry or not image.startswith(prefix) or "@sha256:" not in image:
        return None
    repository, _, digest = image.removeprefix(prefix).partition("@")
    if not repository.startswith(BUILD_REPOSITORY_PREFIX):
        return None
    return repository, digest


def manifests_to_delete(images: Iterable[tuple[str, bool]], registry: str) -> list[tuple[str, str]]:
    """The (repository, digest) pairs no kept image names, in a stable order."""
    kept: set[tuple[str, str]] = set()
    retired: set[tuple[str, str]] = set()
    for image, keep in images:
        manifest = pinned_manifest(image, registry)
        if manifest is not None:
            (kept if keep else retired).add(manifest)
    return sorted(retired - kept)
