"""The proxy plan (`controller.policy.haproxy.plan`), in tables and by property: a plan
applied to what the proxy has leaves it routing every desired key to exactly the desired
servers, a second plan then changes nothing, a server with requests in flight is never
deleted, and a scoped plan touches nothing outside its scope."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.policy.haproxy import (
    ProxyServer,
    ProxyState,
    haproxy_config,
    plan,
    pool_names,
    server_name,
    target_keys,
)
from controller.policy.routes import RouteTarget
from tests.fake_proxy import applied

POOL = tuple(pool_names(4))


def target(host: str, prefix: str = "/", *upstreams: str, name: str = "web") -> RouteTarget:
    return RouteTarget(name, 0, host, prefix, tuple(sorted(upstreams)))


def server(address: str, serving: bool = True, in_flight: int = 0) -> ProxyServer:
    return ProxyServer(server_name(address), address, serving, in_flight)


def test_keys_of_a_prefix() -> None:
    assert target_keys(target("Web.Test")) == (None, "web.test/")
    assert target_keys(target("web.test", "/api/")) == ("web.test/api", "web.test/api/")


def test_a_new_route_adds_its_servers_then_names_its_backend() -> None:
    changes = plan([target("web.test", "/", "127.0.0.1:1")], ProxyState(pool=POOL))
    assert changes.add == (("berth-route-0", "u-127.0.0.1:1", "127.0.0.1:1"),)
    assert changes.prefix == {"web.test/": "berth-route-0"} and changes.exact is None
    assert not changes.retire and not changes.delete


def test_a_replica_replaced_keeps_the_backend_and_the_maps() -> None:
    observed = ProxyState(
        pool=POOL,
        prefix={"web.test/": "berth-route-2"},
        servers={"berth-route-2": {"u-127.0.0.1:1": server("127.0.0.1:1", in_flight=3)}},
    )
    changes = plan([target("web.test", "/", "127.0.0.1:2")], observed)
    assert changes.add == (("berth-route-2", "u-127.0.0.1:2", "127.0.0.1:2"),)
    assert changes.prefix is None and changes.exact is None
    assert changes.retire == (("berth-route-2", "u-127.0.0.1:1"),)
    assert changes.delete == (), "three requests in flight: deleted by a later plan"


def test_a_retired_idle_server_is_deleted_and_a_returning_one_serves_again() -> None:
    observed = ProxyState(
        pool=POOL,
        prefix={"web.test/": "berth-route-0"},
        servers={
            "berth-route-0": {
                "u-127.0.0.1:1": server("127.0.0.1:1", serving=False),
                "u-127.0.0.1:2": server("127.0.0.1:2", serving=False),
            }
        },
    )
    changes = plan([target("web.test", "/", "127.0.0.1:2")], observed)
    assert changes.serve == (("berth-route-0", "u-127.0.0.1:2"),)
    assert changes.delete == (("berth-route-0", "u-127.0.0.1:1"),) and not changes.retire
    assert changes.changes


def test_a_scoped_plan_leaves_other_routes_alone() -> None:
    observed = ProxyState(
        pool=POOL,
        prefix={"other.test/": "berth-route-0"},
        servers={"berth-route-0": {"u-127.0.0.1:9": server("127.0.0.1:9")}},
    )
    changes = plan([target("web.test", "/", "127.0.0.1:1")], observed, {"web.test/"})
    assert changes.prefix == {"other.test/": "berth-route-0", "web.test/": "berth-route-1"}
    assert all(backend != "berth-route-0" for backend, *_ in changes.add + changes.retire)
    assert not changes.delete
    everything = plan([target("web.test", "/", "127.0.0.1:1")], observed)
    assert ("berth-route-0", "u-127.0.0.1:9") in everything.retire, "a full plan cleans up"


def test_a_full_pool_leaves_the_route_unplaced() -> None:
    wanted = [target(f"h{i}.test", "/", f"127.0.0.1:{i}", name=f"d{i}") for i in range(5)]
    changes = plan(wanted, ProxyState(pool=POOL))
    assert len(changes.unplaced) == 1 and len(set(changes.prefix or {})) == 4


def test_the_static_configuration_names_the_pool_and_the_maps() -> None:
    text = haproxy_config("127.0.0.1:8080", "unix:///run/b.sock", "/var/lib/b", 2)
    assert "bind 127.0.0.1:8080" in text and "stats socket /run/b.sock mode 600" in text
    assert "backend berth-route-1" in text and "berth-route-2" not in text
    assert "map_beg(/var/lib/b/berth-prefix.map)" in text
    assert "option idle-close-on-response" in text and "retry-on conn-failure" in text


hosts = st.sampled_from(["a.test", "b.test", "c.test"])
prefixes = st.sampled_from(["/", "/api", "/api/v1", "/x/"])
addresses = st.sets(st.sampled_from([f"127.0.0.1:{p}" for p in range(1, 7)]), max_size=4)
route = st.tuples(hosts, prefixes, addresses, st.sampled_from(["d1", "d2", "d3"]))
targets = st.lists(route, max_size=5).map(
    lambda found: [  # (deployment, index) is a route's id: unique
        RouteTarget(d, i, h, p, tuple(sorted(a))) for i, (h, p, a, d) in enumerate(found)
    ]
)


@settings(max_examples=300, deadline=None)
@given(before=targets, after=targets, busy=st.sets(st.sampled_from(["127.0.0.1:1", "127.0.0.1:2"])))
def test_plans_converge_and_never_delete_a_busy_server(
    before: list[RouteTarget], after: list[RouteTarget], busy: set[str]
) -> None:
    state = applied(ProxyState(pool=POOL), plan(before, ProxyState(pool=POOL)))
    state = ProxyState(  # requests in flight to some servers
        pool=state.pool, exact=state.exact, prefix=state.prefix,
        servers={b: {n: ProxyServer(s.name, s.address, s.serving, int(s.address in busy))
                     for n, s in found.items()} for b, found in state.servers.items()},
    )  # fmt: skip
    changes = plan(after, state)
    for backend, name in changes.delete:
        assert state.servers[backend][name].in_flight == 0
    state = applied(state, changes)
    placed = {t.id for t in after} - set(changes.unplaced)
    for wanted in after:
        exact, prefix = target_keys(wanted)
        routed = state.prefix.get(prefix)
        if wanted.id not in placed or routed is None:
            continue
        if exact is not None:
            assert state.exact[exact] == routed
        serving = {s.address for s in state.servers.get(routed, {}).values() if s.serving}
        claimed_by = [t for t in after if target_keys(t)[1] == prefix]
        assert serving == set(claimed_by[0].upstreams) or len(claimed_by) > 1
    again = plan(after, state)
    assert not again.changes, again
