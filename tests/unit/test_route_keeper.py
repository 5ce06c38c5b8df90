"""The route keeper against an in-memory proxy: only the affected route changes, a
withdrawn replica is never routed again, an older resync view never undoes a pass, and a
machine without routes is not asked about its proxy at every resync."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from typing import Any

import pytest

from controller.loop.routes import RouteKeeper
from controller.model.errors import ProxyUnavailable
from controller.model.spec import Route

ROUTE = [Route(host="web.test", port=8080)]


class FakeProxy:
    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.calls: list[str] = []
        self.down = False

    @property
    def admin_listen(self) -> str:
        return "127.0.0.1:2019"

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise ProxyUnavailable("down")

    def current(self) -> dict[str, Any]:
        self._call("current")
        return self.config

    def load(self, config: dict[str, Any]) -> None:
        self._call("load")
        self.config = config

    def set_handlers(self, route_id: str, handlers: list[dict[str, Any]]) -> bool:
        self._call("patch")
        for route in self.config["apps"]["http"]["servers"]["berth"]["routes"]:
            if route.get("@id") == route_id:
                route["handle"] = handlers
                return True
        return False

    def in_flight(self, addresses: Collection[str]) -> int:
        return 0

    def upstreams(self) -> list[str]:
        routes = self.config["apps"]["http"]["servers"]["berth"]["routes"]
        handle = routes[0]["handle"][0]
        return [u["dial"] for u in handle.get("upstreams", [])]


def keeper() -> tuple[RouteKeeper, FakeProxy]:
    proxy = FakeProxy()
    routes = RouteKeeper(proxy, "127.0.0.1:8080")
    routes.repair({}, time.monotonic())  # the first resync: every route known
    return routes, proxy


def test_a_change_of_replicas_patches_only_that_route_and_withdrawn_stay_out() -> None:
    routes, proxy = keeper()
    assert routes.publish("web", ROUTE, {"a": {8080: "127.0.0.1:1"}}).changed
    assert proxy.calls[-1] == "load"  # a new route: the configuration is loaded
    routes.publish("web", ROUTE, {"a": {8080: "127.0.0.1:1"}, "b": {8080: "127.0.0.1:2"}})
    assert proxy.calls[-1] == "patch" and proxy.upstreams() == ["127.0.0.1:1", "127.0.0.1:2"]
    assert routes.withdraw("web", (), ["a"]) == frozenset({"127.0.0.1:1"})
    assert proxy.upstreams() == ["127.0.0.1:2"]
    # a list taken during the drain still shows "a" ready: it is not routed again
    routes.publish("web", ROUTE, {"a": {8080: "127.0.0.1:1"}, "b": {8080: "127.0.0.1:2"}})
    assert proxy.upstreams() == ["127.0.0.1:2"]


def test_an_older_resync_view_never_undoes_a_pass() -> None:
    routes, proxy = keeper()
    listed_at = time.monotonic()  # the resync lists containers ...
    routes.publish("web", ROUTE, {"b": {8080: "127.0.0.1:2"}})  # ... a pass moves on
    routes.repair({"web": (ROUTE, {"a": {8080: "127.0.0.1:1"}})}, listed_at)
    assert proxy.upstreams() == ["127.0.0.1:2"]


def test_without_routes_the_proxy_is_asked_once() -> None:
    proxy = FakeProxy()
    proxy.down = True
    routes = RouteKeeper(proxy, "127.0.0.1:8080")
    with pytest.raises(ProxyUnavailable):
        routes.repair({}, time.monotonic())  # once, to empty a predecessor's leftovers
    assert not routes.repair({}, time.monotonic())
    assert not routes.repair({}, time.monotonic())
    assert proxy.calls == ["current"]
    assert routes.drain(frozenset({"127.0.0.1:1"}), 0.05, threading.Event()) < 1.0
