"""The registry gateway: Berth's manifests deleted from the registry, and its garbage collected.

Called by the janitor (`controller.loop.janitor`) on the leader when BERTH_REGISTRY is set,
with the manifests `controller.policy.registry` chose (Berth's build repositories only).
Deletes go through the registry's HTTP API (distribution v2: `DELETE
/v2/<repository>/manifests/<digest>`, which needs `storage.delete.enabled`, as `berth
registry-config` writes it). Deleting a manifest frees no disk: the registry's own
`garbage-collect` does, reading the registry's configuration file; it runs only when
BERTH_REGISTRY_CONFIG names that file on this host (the registry beside the leader, as
`deploy/setup-host.sh` makes it). Garbage collection is meant for an idle registry: a push
racing it can lose a blob it just uploaded and fail, which the build retries (transient).
"""

from __future__ import annotations

import subprocess

import httpx

from controller.model.errors import DockerServerError, DockerUnavailable

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.index.v1+json",
    )
)
GC_TIMEOUT_S = 600.0


class RegistryGateway:
    """One registry (`host:port`, plain HTTP: a private address, as the nodes reach it)."""

    def __init__(self, address: str, config_path: str = "", timeout_s: float = 30.0) -> None:
        self.address = address
        self.config_path = config_path
        self._client = httpx.Client(base_url=f"http://{address}", timeout=timeout_s)

    def delete(self, repository: str, digest: str) -> bool:
        """Delete one manifest; True if deleted, False if it was already gone."""
        try:
            answer = self._client.delete(
                f"/v2/{repository}/manifests/{digest}", headers={"Accept": MANIFEST_TYPES}
            )
        except httpx.HTTPError as error:
            raise DockerUnavailable(f"registry {self.address}: {error}") from error
        if answer.status_code == 404:
            return False
        if answer.status_code >= 300:
            raise DockerServerError(
                f"registry {self.address}: DELETE {repository}@{digest[:19]} answered "
                f"{answer.status_code}: {answer.text[:200]}"
            )
        return True

    def collect_garbage(self) -> str:
        """Run the registry's garbage collection; its last line ("" without a config)."""
        if not self.config_path:
            return ""
        try:
            result = subprocess.run(
                ["docker-registry", "garbage-collect", self.config_path],
                capture_output=True,
                text=True,
                timeout=GC_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise DockerServerError(f"registry garbage-collect: {error}") from error
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        if result.returncode != 0:
            raise DockerServerError(
                f"registry garbage-collect exited {result.returncode}: {lines[-1:] or ''}"
            )
        return lines[-1] if lines else "done"

    def close(self) -> None:
        self._client.close()


def registry_for(address: str, config_path: str) -> RegistryGateway | None:
    """The gateway of BERTH_REGISTRY, or None when no registry is named."""
    return RegistryGateway(address, config_path) if address else None
