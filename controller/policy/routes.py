"""Routes, decided: which replicas serve which route, and the proxy configuration that says so.

Pure: no I/O. Called by the route keeper (`controller.loop.routes`), which pushes what
these functions compute to the proxy gateway (`controller.gateways.proxy`), and by the
full resync, which compares the whole configuration with the proxy's. The configuration is
Caddy's JSON: one HTTP server listening on BERTH_PROXY_HTTP_ADDR, one route per
(deployment, host, path prefix) with a stable `@id`, longest prefixes first, and a last
route answering 404 for anything else. A route with no ready replica answers 503.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.model.replicas import ObservedReplica
from controller.model.spec import Route

SERVER = "berth"
# A connection refused by an upstream that is going away is retried on another for this
# long: a request never fails because it raced a replica's removal.
TRY_DURATION = "2s"


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


def handlers(upstreams: Sequence[str]) -> list[dict[str, Any]]:
    if not upstreams:
        return [
            {
                "handler": "static_response",
                "status_code": 503,
                "body": "no ready replica\n",
            }
        ]
    return [
        {
            "handler": "reverse_proxy",
            "upstreams": [{"dial": address} for address in upstreams],
            "load_balancing": {"try_duration": TRY_DURATION, "try_interval": "50ms"},
        }
    ]


def _paths(prefix: str) -> list[str]:
    if prefix == "/":
        return ["/*"]
    trimmed = prefix.rstrip("/")
    return [trimmed, f"{trimmed}/*"]


def route_json(target: RouteTarget) -> dict[str, Any]:
    return {
        "@id": target.id,
        "match": [{"host": [target.host], "path": _paths(target.path_prefix)}],
        "handle": handlers(target.upstreams),
        "terminal": True,
    }


def caddy_config(
    admin_listen: str, http_listen: str, all_targets: Iterable[RouteTarget]
) -> dict[str, Any]:
    """Caddy's whole configuration for these routes (Berth owns all of it)."""
    ordered = sorted(
        all_targets, key=lambda t: (-len(t.path_prefix), t.host, t.deployment, t.index)
    )
    routes = [route_json(target) for target in ordered]
    routes.append(
        {"handle": [{"handler": "static_response", "status_code": 404, "body": "no route\n"}]}
    )
    return {
        "admin": {"listen": admin_listen},
        "apps": {
            "http": {
                "servers": {
                    SERVER: {
                        "listen": [http_listen],
                        "automatic_https": {"disable": True},
                        "routes": routes,
                    }
                }
            }
        },
    }
