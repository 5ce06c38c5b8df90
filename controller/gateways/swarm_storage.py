"""Volumes and networks on a swarm: the loop's `StorageEngine` port with `BERTH_RUNTIME=swarm`.

Called by the executor and the janitor, as `DockerStorage` is on one host, through the same
manager the swarm runtime talks to. What differs on a swarm:

- Networks are overlay networks, attachable, swarm-wide: a service on any node joins them,
  and its deployment's name resolves to its tasks from every node (`swarm_spec`). One is
  unused when no service's task template names it (its `Containers` lists the manager's
  own containers only).
- A named volume lives on one node. Swarm makes it there when the task starts, with
  Berth's labels from the service's mount (`ensure_volume` has nothing to do), on the node
  the runtime chose and labelled `io.berth.volume-home.<volume>` (`SwarmRuntime.place`).
  A volume is removed (`retain: false`) only where Berth's manager can reach it: on the
  manager's own node. Docker's API offers no removal on another node, so a volume there
  is kept and the outcome names the node and the command, which the executor records as
  a warning event; its node label stays, so that the data's home is never forgotten. A
  removed service's task lets go of its volume only once stopped: removal waits for it.
"""

from __future__ import annotations

import time

from controller.gateways.docker_engine import translated
from controller.gateways.docker_storage import DockerStorage, _ours
from controller.gateways.retry import retry_transient
from controller.gateways.swarm_runtime import update_node_spec
from controller.model.names import LABEL_DEPLOYMENT, LABEL_NETWORK, LABEL_VOLUME_HOME

# A removed service's task stops after the call returns (within its stop grace): how long
# a `retain: false` volume's removal waits for the task to let go of it.
RELEASE_WAIT_S = 60.0


class SwarmStorage(DockerStorage):
    """Overlay networks and node-local volumes through a swarm manager."""

    network_driver = "overlay"

    @retry_transient
    def ensure_volume(self, name: str, labels: dict[str, str], driver: str = "local") -> bool:
        """Swarm makes the volume (with its driver) on the node where the task starts."""
        return False

    @retry_transient
    def unused_networks(self, cluster: str, wanted: set[str]) -> list[str]:
        """Berth's overlay networks of `cluster` that none of Berth's services names, minus
        `wanted` (one another service joined is refused removal by Docker, and kept)."""
        with translated("list_networks"):
            networks = self.api.networks(filters={"label": [LABEL_NETWORK]})
            services = self.api.services(filters={"label": [LABEL_DEPLOYMENT]})
        named: set[str] = set()
        for service in services:
            template = (service.get("Spec") or {}).get("TaskTemplate") or {}
            named.update(str(n.get("Target")) for n in template.get("Networks") or [])
        return sorted(
            str(network.get("Name"))
            for network in networks
            if str(network.get("Name")) not in wanted
            and _ours(network.get("Labels"), cluster, LABEL_NETWORK)
            and not {str(network.get("Name")), str(network.get("Id"))} & named
        )

    @retry_transient
    def remove_volume(self, name: str, cluster: str) -> str:
        """'removed', 'missing', 'in use', 'foreign', or which node keeps it and why."""
        key = f"{LABEL_VOLUME_HOME}.{name}"
        with translated("nodes"):
            homes = [
                n for n in self.api.nodes() if ((n.get("Spec") or {}).get("Labels") or {}).get(key)
            ]
            here = str((self.api.info().get("Swarm") or {}).get("NodeID") or "")
        if not homes:
            return super().remove_volume(name, cluster)
        home = homes[0]
        if str(home["ID"]) != here:
            hostname = str((home.get("Description") or {}).get("Hostname") or home["ID"])
            address = str((home.get("Status") or {}).get("Addr") or "")
            return (
                f"it is on node {hostname}@{address}, and Docker removes a volume only on its "
                f"own node: run `docker volume rm {name}` there"
            )
        outcome = super().remove_volume(name, cluster)
        deadline = time.monotonic() + RELEASE_WAIT_S
        while outcome == "in use" and time.monotonic() < deadline:
            time.sleep(0.2)  # the removed service's task still stops (its grace)
            outcome = super().remove_volume(name, cluster)
        if outcome in ("removed", "missing"):
            update_node_spec(
                self.api,
                str(home["ID"]),
                lambda spec: {
                    **spec,
                    "Labels": {k: v for k, v in (spec.get("Labels") or {}).items() if k != key},
                },
            )
        return outcome
