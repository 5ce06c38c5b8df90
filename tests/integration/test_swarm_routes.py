"""Routes to every node, on the three-node rig (`BERTH_RUNTIME=swarm`) behind a real HAProxy:
a routed deployment of three replicas on three nodes, reached at each node's address and
host-mode port (no routing mesh), goes through ten updates and a node drained while wrk
(kept-alive connections, never resends) and hey (a connection per request) run at once:
not one error or non-2xx answer. The proxy follows each replica to its new node."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from functools import partial

import pytest

from controller.app.daemon import Daemon
from controller.gateways import load_tools
from controller.gateways.haproxy_server import PrivateHaproxy
from controller.gateways.swarm_rig import SwarmRig
from tests.integration.conftest import Sql, berth, wait_for
from tests.integration.test_routes import (
    HEALTH,
    ROUTE,
    answers,
    clients_saw_no_failure,
    converged_at,
)

pytestmark = pytest.mark.integration
SECONDS = 150


@pytest.fixture
def proxy() -> Iterator[PrivateHaproxy]:
    haproxy = PrivateHaproxy()
    yield haproxy
    haproxy.close()


def nodes_of(sql: Sql) -> list[str]:
    rows = sql("SELECT node FROM replicas WHERE deployment = 'web' AND state = 'running'")
    return [str(r["node"]).rpartition("@")[2] for r in rows]


@pytest.mark.skipif(not load_tools.available(), reason="wrk and hey: deploy/setup-host.sh")
def test_ten_updates_and_a_drain_across_nodes_fail_no_request(
    start_swarm_daemon: Callable[..., Daemon],
    proxy: PrivateHaproxy,
    sql: Sql,
    rig: SwarmRig,
    cluster: str,
    database_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    start_swarm_daemon(proxy_admin_url=proxy.admin_url, proxy_http_addr=proxy.http_addr)
    sql.insert("web", replicas=3, healthcheck=HEALTH, routes=ROUTE)
    wait_for(lambda: sql.converged("web"), timeout_s=120, what="web converged")
    host = "web.berth.test"
    wait_for(lambda: answers(proxy, host), what="routed")
    spread = wait_for(
        lambda: len(set(n := nodes_of(sql))) == 3 and n, timeout_s=30, what="one per node"
    )
    assert set(spread) == {node.address for node in rig.nodes}
    reports: list[load_tools.LoadReport] = []
    tools = [
        threading.Thread(
            target=lambda: reports.append(load_tools.wrk(proxy.http_addr, host, 16, SECONDS))
        ),
        threading.Thread(
            target=lambda: reports.append(load_tools.hey(proxy.http_addr, host, 4, SECONDS))
        ),
    ]
    for tool in tools:
        tool.start()
    started = time.monotonic()
    for generation in range(2, 12):  # ten updates: a new revision each, on every node
        sql("UPDATE deployments SET env = %s WHERE name = 'web'", [f'{{"ROUND": "{generation}"}}'])
        wait_for(partial(converged_at, sql, generation), timeout_s=90, what=f"gen {generation}")
    drained = rig.nodes[2]
    done = berth(database_url, "node", "drain", drained.address, cluster=cluster)
    assert done.returncode == 0, done.stderr
    wait_for(
        lambda: (
            drained.address not in (n := nodes_of(sql)) and len(n) == 3 and sql.converged("web")
        ),
        timeout_s=90,
        what="web off the drained node, converged",
    )
    changed_s = time.monotonic() - started
    for tool in tools:
        tool.join(SECONDS + 60)
    label = "swarm routes, 10 updates and a drain"
    clients_saw_no_failure(capsys, label, reports, changed_s, SECONDS, proxy)
    assert answers(proxy, host)
