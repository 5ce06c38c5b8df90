"""The route keeper against an in-memory HAProxy (tests/fake_proxy.py): a pass changes only
its own deployment's routes, a withdrawn replica is never routed again and is deleted once
idle, an older resync view never undoes a pass, and a machine without routes is not asked
about its proxy at every resync."""

from __future__ import annotations

import threading
import time

import pytest

from controller.loop.routes import RouteKeeper
from controller.model.errors import ProxyUnavailable
from controller.model.spec import Route
from tests.fake_proxy import FakeProxy

ROUTE = [Route(host="web.test", port=8080)]
OTHER = [Route(host="other.test", port=8080, path_prefix="/api")]


def keeper() -> tuple[RouteKeeper, FakeProxy]:
    proxy = FakeProxy()
    routes = RouteKeeper(proxy)
    routes.repair({}, time.monotonic())  # the first resync: every route known
    return routes, proxy


def test_a_change_of_replicas_changes_only_servers_and_withdrawn_stay_out() -> None:
    routes, proxy = keeper()
    assert routes.publish("web", ROUTE, {"a": {8080: "127.0.0.1:1"}}).changed
    assert proxy.serving("web.test", "/x") == ["127.0.0.1:1"]
    maps = (proxy.state.exact, proxy.state.prefix)
    routes.publish("web", ROUTE, {"a": {8080: "127.0.0.1:1"}, "b": {8080: "127.0.0.1:2"}})
    assert proxy.serving("web.test") == ["127.0.0.1:1", "127.0.0.1:2"]
    assert (proxy.state.exact, proxy.state.prefix) == maps, "the maps did not change"
    proxy.busy("127.0.0.1:1", 2)
    assert routes.withdraw("web", (), ["a"]) == frozenset({"127.0.0.1:1"})
    assert proxy.serving("web.test") == ["127.0.0.1:2"]
    assert proxy.in_flight({"127.0.0.1:1"}) == 2, "in flight: out of rotation, not deleted"
    # a list taken during the drain still shows "a" ready: it is not routed again
    routes.publish("web", ROUTE, {"a": {8080: "127.0.0.1:1"}, "b": {8080: "127.0.0.1:2"}})
    assert proxy.serving("web.test") == ["127.0.0.1:2"]
    proxy.busy("127.0.0.1:1", 0)
    routes.repair({"web": (ROUTE, {"b": {8080: "127.0.0.1:2"}})}, time.monotonic())
    names = [s.address for found in proxy.state.servers.values() for s in found.values()]
    assert names == ["127.0.0.1:2"], "the drained server is deleted"


def test_a_pass_touches_no_other_deployment_and_a_delete_frees_its_backend() -> None:
    proxy = FakeProxy()
    routes = RouteKeeper(proxy)  # no resync yet: a pass still programs its own routes
    assert routes.publish("web", ROUTE, {"a": {8080: "127.0.0.1:1"}}).changed
    stranger = RouteKeeper(proxy)  # another view (a predecessor's routes are left alone)
    stranger.publish("other", OTHER, {"c": {8080: "127.0.0.1:3"}})
    assert proxy.serving("other.test", "/api") == ["127.0.0.1:3"]
    assert proxy.serving("other.test", "/api/v1") == ["127.0.0.1:3"]
    assert proxy.serving("other.test", "/apix") == []
    routes.publish("web", ROUTE, {"b": {8080: "127.0.0.1:2"}})
    assert proxy.serving("other.test", "/api") == ["127.0.0.1:3"], "untouched by web's pass"
    routes.forget("web")
    assert proxy.serving("web.test") == []
    assert proxy.serving("other.test", "/api") == ["127.0.0.1:3"]
    used = set(proxy.state.exact.values()) | set(proxy.state.prefix.values())
    assert len(used) == 1


def test_an_older_resync_view_never_undoes_a_pass() -> None:
    routes, proxy = keeper()
    listed_at = time.monotonic()  # the resync lists containers ...
    routes.publish("web", ROUTE, {"b": {8080: "127.0.0.1:2"}})  # ... a pass moves on
    routes.repair({"web": (ROUTE, {"a": {8080: "127.0.0.1:1"}})}, listed_at)
    assert proxy.serving("web.test") == ["127.0.0.1:2"]


def test_a_full_pool_is_said_and_the_others_still_served() -> None:
    proxy = FakeProxy(pool_size=1)
    routes = RouteKeeper(proxy)
    assert routes.publish("web", ROUTE, {"a": {8080: "127.0.0.1:1"}}).problem is None
    published = routes.publish("other", OTHER, {"c": {8080: "127.0.0.1:3"}})
    assert published.problem and "pool of backends is full" in published.problem
    assert proxy.serving("web.test") == ["127.0.0.1:1"]


def test_without_routes_the_proxy_is_asked_once() -> None:
    proxy = FakeProxy()
    proxy.down = True
    routes = RouteKeeper(proxy)
    with pytest.raises(ProxyUnavailable):
        routes.repair({}, time.monotonic())  # once, to empty a predecessor's leftovers
    assert not routes.repair({}, time.monotonic())
    assert not routes.repair({}, time.monotonic())
    assert proxy.calls == ["observe"]
    drained = routes.drain(frozenset({"127.0.0.1:1"}), 0.05, threading.Event())
    assert drained.waited_s < 1.0 and drained.in_flight is None, "the proxy could not say"
    assert "could not say" in drained.report(1, 0.05)[0]


def test_an_unreachable_proxy_is_a_problem_of_the_pass_not_an_error() -> None:
    routes, proxy = keeper()
    proxy.down = True
    published = routes.publish("web", ROUTE, {"a": {8080: "127.0.0.1:1"}})
    assert not published.changed and published.problem == "down"
    proxy.down = False
    assert routes.publish("web", ROUTE, {"a": {8080: "127.0.0.1:1"}}).changed, "pushed again"


def test_a_drain_ends_when_nothing_is_in_flight_and_tells_what_its_limit_left() -> None:
    routes, proxy = keeper()
    routes.publish("web", ROUTE, {"a": {8080: "127.0.0.1:1"}, "b": {8080: "127.0.0.1:2"}})
    proxy.busy("127.0.0.1:1", 2)
    leaving = routes.withdraw("web", (), ["a"])
    held = routes.drain(leaving, 0.3, threading.Event())
    assert held.in_flight == 2 and held.waited_s >= 0.3
    message, level = held.report(1, 0.3)
    assert level == "warning"
    assert "its limit (rollout.drain_s 0.3s), with 2 request(s) still in flight" in message
    proxy.busy("127.0.0.1:1", 0)
    idle = routes.drain(leaving, 5.0, threading.Event())
    assert idle.in_flight == 0 and idle.waited_s < 1.0, "ended by the count, not the limit"
    assert idle.report(1, 5.0) == (
        f"1 container(s) out of the routes; drained in {idle.waited_s:.2f}s (at most 5s)",
        "info",
    )
