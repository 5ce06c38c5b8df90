"""The image registry's configuration, and a private registry for the tests and benchmarks.

`registry_configuration` is what `berth registry-config` writes for `deploy/setup-host.sh`
(Debian's `docker-registry`, the distribution registry v2): a listener on BERTH_REGISTRY,
storage in one folder, deletes enabled (so that Berth's repositories can be pruned and
garbage-collected), no authentication (the listener's address is the boundary: loopback by
default). `PrivateRegistry` runs one of its own, on an address the test names (a swarm rig's
link, which the rig's nodes trust as an insecure registry), with its storage in a temporary
folder; `close` removes both. Berth itself reaches a registry only through the engine
(`docker push`, and the nodes' pulls): nothing here is on the loop's path.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from controller.gateways.processes import free_port

START_TIMEOUT_S = 20.0


def registry_configuration(listen: str, root: Path) -> str:
    """The registry's configuration (YAML; written as JSON, which YAML reads)."""
    return json.dumps(
        {
            "version": 0.1,
            "log": {"level": "info", "fields": {"service": "berth-registry"}},
            "storage": {
                "filesystem": {"rootdirectory": str(root)},
                "delete": {"enabled": True},
                "cache": {"blobdescriptor": "inmemory"},
            },
            "http": {"addr": listen, "headers": {"X-Content-Type-Options": ["nosniff"]}},
        },
        indent=2,
    )


class PrivateRegistry:
    """A `docker-registry` on `host` (a free port), storage in a temporary folder."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="br", dir="/tmp"))
        self.address = f"{host}:{free_port()}"
        self.log_path = self.folder / "registry.log"
        config = self.config_path = self.folder / "config.yml"
        config.write_text(registry_configuration(self.address, self.folder / "data"))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["docker-registry", "serve", str(config)], stdout=log, stderr=log
            )
        try:
            self._await()
        except BaseException:
            self.close()
            raise

    def _await(self) -> None:
        host, _, port = self.address.rpartition(":")
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with socket.create_connection((host, int(port)), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not come up; see {self.log_path}")

    def repositories(self) -> list[str]:
        """The repositories the registry holds (its catalog, read from its storage)."""
        root = self.folder / "data" / "docker" / "registry" / "v2" / "repositories"
        return (
            sorted(str(path.parent.relative_to(root)) for path in root.rglob("_manifests"))
            if root.exists()
            else []
        )

    def manifest_status(self, pinned: str) -> int:
        """The HTTP status of GET on a pinned image's manifest (200 held, 404 deleted)."""
        repository, _, digest = pinned.removeprefix(f"{self.address}/").partition("@")
        request = urllib.request.Request(
            f"http://{self.address}/v2/{repository}/manifests/{digest}",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    def blobs(self) -> int:
        """How many layer and config blobs the registry stores (garbage collection frees them)."""
        root = self.folder / "data" / "docker" / "registry" / "v2" / "blobs"
        return sum(1 for _ in root.rglob("data")) if root.exists() else 0

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)
