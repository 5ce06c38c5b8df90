"""The Docker gateway's volumes, networks and clean-up: what outlives one container.

Called by the executor (`ensure_volume`, `ensure_network` before a create; `remove_volume`
when a deployment is deleted) and by the janitor (`controller.loop.janitor`: networks
nobody uses any more). Every object Berth makes here carries Berth's labels
(`io.berth.cluster` and `io.berth.volume` or `io.berth.network`), and every removal first
reads those labels: an object without them, or of another cluster, is never touched.
"""

from __future__ import annotations

import threading
from typing import Any

from controller.gateways.docker_engine import DockerGateway, translated
from controller.gateways.retry import retry_transient
from controller.model.errors import DockerConflict, DockerRejected, DockerServerError
from controller.model.names import (
    DEFAULT_CLUSTER,
    LABEL_CLUSTER,
    LABEL_DEPLOYMENT,
    LABEL_NETWORK,
    LABEL_VOLUME,
)


def _ours(labels: dict[str, str] | None, cluster: str, kind_label: str) -> bool:
    found = labels or {}
    return kind_label in found and found.get(LABEL_CLUSTER, DEFAULT_CLUSTER) == cluster


class DockerStorage:
    """Named volumes and networks through the gateway's one `APIClient`."""

    # Swarm's storage (`controller.gateways.swarm_storage`) makes overlay networks instead.
    network_driver = "bridge"

    def __init__(self, docker: DockerGateway) -> None:
        self.api = docker.api
        # Docker does not refuse a second network of the same name (its duplicate check is
        # best effort), and two replicas joining "ambiguous" names then fail: the leader's
        # workers make networks one at a time.
        self._network_lock = threading.Lock()

    @retry_transient
    def ensure_volume(self, name: str, labels: dict[str, str], driver: str = "local") -> bool:
        """Make volume `name` with `driver` unless it exists; True if made. One of the same
        name without Berth's labels is refused, not adopted."""
        try:
            with translated("inspect_volume", name):
                found = self.api.inspect_volume(name)
        except DockerRejected:
            with translated("create_volume", name):
                self.api.create_volume(name=name, driver=driver, labels=labels)
            return True
        if not _ours(found.get("Labels"), labels[LABEL_CLUSTER], LABEL_VOLUME):
            raise DockerRejected(
                f"volume {name!r} exists without Berth's labels; Berth never uses or removes "
                "it: rename or remove it"
            )
        return False

    @retry_transient
    def ensure_network(self, name: str, labels: dict[str, str]) -> bool:
        """Make network `name` (a bridge; on a swarm an attachable overlay) unless it
        exists; True if made."""
        with self._network_lock:
            return self._ensure_network(name, labels)

    def _ensure_network(self, name: str, labels: dict[str, str]) -> bool:
        with translated("list_networks", name):
            found = [n for n in self.api.networks(names=[name]) if n.get("Name") == name]
        if found:
            if not _ours(found[0].get("Labels"), labels[LABEL_CLUSTER], LABEL_NETWORK):
                raise DockerRejected(
                    f"network {name!r} exists without Berth's labels; Berth never joins or "
                    "removes it: rename or remove it"
                )
            return False
        try:
            with translated("create_network", name):
                self.api.create_network(
                    name,
                    driver=self.network_driver,
                    labels=labels,
                    check_duplicate=True,
                    attachable=self.network_driver == "overlay" or None,
                )
        except DockerConflict:  # made meanwhile by another pass
            return False
        return True

    @retry_transient
    def remove_volume(self, name: str, cluster: str) -> str:
        """Remove a named volume Berth made: 'removed', 'missing', 'in use' or 'foreign'."""
        try:
            with translated("inspect_volume", name):
                found = self.api.inspect_volume(name)
        except DockerRejected:
            return "missing"
        if not _ours(found.get("Labels"), cluster, LABEL_VOLUME):
            return "foreign"
        try:
            with translated("remove_volume", name):
                self.api.remove_volume(name)
        except DockerConflict:
            return "in use"
        return "removed"

    @retry_transient
    def deployment_volumes(self, deployment: str, cluster: str) -> list[str]:
        """The named volumes Berth made for `deployment` in `cluster`."""
        with translated("list_volumes"):
            answer = self.api.volumes(filters={"label": [f"{LABEL_DEPLOYMENT}={deployment}"]})
        return sorted(
            str(volume["Name"])
            for volume in answer.get("Volumes") or []
            if _ours(volume.get("Labels"), cluster, LABEL_VOLUME)
        )

    @retry_transient
    def unused_networks(self, cluster: str, wanted: set[str]) -> list[str]:
        """Berth's networks of `cluster` that no container is attached to, minus `wanted`."""
        with translated("list_networks"):
            networks = self.api.networks(filters={"label": [LABEL_NETWORK]})
        unused = []
        for network in networks:
            name = str(network.get("Name"))
            if name in wanted or not _ours(network.get("Labels"), cluster, LABEL_NETWORK):
                continue
            with translated("inspect_network", name):
                detail: dict[str, Any] = self.api.inspect_network(network["Id"])
            if not detail.get("Containers"):
                unused.append(name)
        return unused

    def remove_network(self, name: str, cluster: str) -> bool:
        """Remove one of Berth's networks unless a container joined it meanwhile."""
        try:
            with translated("inspect_network", name):
                found = self.api.inspect_network(name)
            if not _ours(found.get("Labels"), cluster, LABEL_NETWORK):
                return False
            with translated("remove_network", name):
                self.api.remove_network(found["Id"])
            return True
        except (DockerRejected, DockerConflict, DockerServerError):
            return False
