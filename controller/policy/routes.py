"""Routes, decided: which replicas serve which route, and the proxy configuration that says so.

Pure: no I/O. Called by the route keeper (`controller.loop.routes`), which pushes what
these functions compute to the proxy (`controller.policy.haproxy` decides how), and by
the full resync. A route is one (deployment, host, path prefix) with a stable id; a route
with no ready replica answers 503, a request no route claims 404.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from controller.model.replicas import ObservedReplica
from controller.model.spec import Route


@dataclass(frozen=True)
class RouteTarget:
    """One route of one deployment with the addresses of its ready replicas."""

    deployment: str
    index: int
    host: str
    path_prefix: str
    upstreams: tuple[str, ...]  # "127.0.0.1:49153", sorted

    @property
    def id(self) -> str:
        return route_id(self.deployment, self.index)


def route_id(deployment: str, index: int) -> str:
    return f"berth-{deployment}-route-{index}"


def members(
    routes: Sequence[Route],
    containers: Iterable[ObservedReplica],
    spec_hashes: frozenset[str] | None = None,
) -> dict[str, dict[int, str]]:
    """The replicas that may serve: ready containers (of the serving revisions,
    `spec_hashes`, when given), with the host address of each routed port."""
    ports = {route.port for route in routes}
    found: dict[str, dict[int, str]] = {}
    for container in containers:
        if not container.ready:
            continue
        if spec_hashes is not None and container.spec_hash not in spec_hashes:
            continue
        addresses = {}
        for port in ports:
            published = container.address(port)
            if published is not None:
                addresses[port] = f"{published[0]}:{published[1]}"
        if addresses:
            found[container.id] = addresses
    return found


def targets(
    deployment: str, routes: Sequence[Route], served_by: Mapping[str, Mapping[int, str]]
) -> list[RouteTarget]:
    """The deployment's routes, each with the addresses of its serving replicas."""
    return [
        RouteTarget(
            deployment,
            index,
            route.host,
            route.path_prefix,
            tuple(sorted(a[route.port] for a in served_by.values() if route.port in a)),
        )
        for index, route in enumerate(routes)
    ]
