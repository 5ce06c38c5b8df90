"""Routes through a real HAProxy (a private one per test): traffic reaches ready replicas
only, an image update and a scale-down under continuous requests fail none, and a proxy
restarted empty is programmed again by the next resync."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

from controller.app.daemon import Daemon
from controller.gateways import load_tools
from controller.gateways.haproxy_server import PrivateHaproxy
from controller.gateways.traffic import Traffic
from tests.integration.conftest import (
    EXAMPLE_IMAGE,
    EXAMPLE_IMAGE_2,
    Containers,
    Sql,
    berth_ok,
    report,
    wait_for,
)

pytestmark = pytest.mark.integration

PROBE = ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
HEALTH = {"test": PROBE, "interval_s": 0.5, "timeout_s": 2, "retries": 3}
ROUTE = [{"host": "web.berth.test", "port": 8080}]
TIMELINE = (
    "SELECT extract(epoch FROM at) AS t, message FROM deployment_events "
    "WHERE deployment = 'web' ORDER BY id"
)


@pytest.fixture
def proxy() -> Iterator[PrivateHaproxy]:
    haproxy = PrivateHaproxy()
    yield haproxy
    haproxy.close()


def get(proxy: PrivateHaproxy, host: str, path: str = "/") -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.http_port, timeout=5)
    try:
        connection.request("GET", path, headers={"Host": host})
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


def answers(proxy: PrivateHaproxy, host: str) -> bool:
    try:
        return get(proxy, host)[0] == 200
    except OSError:
        return False


def start(start_daemon: Callable[..., Daemon], proxy: PrivateHaproxy, **overrides: Any) -> Daemon:
    return start_daemon(
        proxy_admin_url=proxy.admin_url, proxy_http_addr=proxy.http_addr, **overrides
    )


def test_a_route_reaches_ready_replicas_and_survives_a_proxy_restart(
    sql: Sql, start_daemon: Callable[..., Daemon], proxy: PrivateHaproxy
) -> None:
    start(start_daemon, proxy)
    sql.insert("web", replicas=2, healthcheck=HEALTH, routes=ROUTE)
    wait_for(lambda: sql.converged("web"), what="web converged")
    wait_for(lambda: answers(proxy, "web.berth.test"), what="routed")
    assert get(proxy, "web.berth.test") == (200, "<h1>hello from berth</h1>\n")
    assert get(proxy, "nobody.berth.test")[0] == 404
    events = sql(
        "SELECT phase_to FROM deployment_events WHERE deployment = 'web' AND kind = 'phase'"
    )
    assert "updating_routes" in [e["phase_to"] for e in events]

    proxy.restart()  # comes back empty, as a wiped proxy would
    assert not answers(proxy, "web.berth.test"), "an empty proxy routes nothing"
    wait_for(
        lambda: answers(proxy, "web.berth.test"), timeout_s=15, what="re-programmed by a resync"
    )

    proxy.stop()  # the proxy is down: containers keep converging, the status says so
    sql("UPDATE deployments SET replicas = 3 WHERE name = 'web'")
    status = wait_for(
        lambda: (s := sql.converged("web")) and s["ready_replicas"] == 3 and s,
        what="scaled without the proxy",
    )
    assert "routes not updated" in status["message"], status["message"]
    proxy.start()
    wait_for(lambda: answers(proxy, "web.berth.test"), timeout_s=15, what="re-programmed")
    wait_for(
        lambda: "routes not updated" not in (sql.status("web") or {}).get("message", "x"),
        timeout_s=15,
        what="the message cleared",
    )


def test_update_and_scale_down_under_load_fail_no_request(
    sql: Sql,
    start_daemon: Callable[..., Daemon],
    proxy: PrivateHaproxy,
    containers: Containers,
    capsys: pytest.CaptureFixture[str],
) -> None:
    start(start_daemon, proxy)
    sql.insert("web", replicas=3, healthcheck=HEALTH, routes=ROUTE)
    wait_for(lambda: sql.converged("web"), what="web converged")
    wait_for(lambda: answers(proxy, "web.berth.test"), what="routed")
    before = {c["Id"] for c in containers.find("web")}
    with Traffic(proxy.http_addr, "web.berth.test", rate=200, max_seconds=120) as traffic:
        sql("UPDATE deployments SET image = %s WHERE name = 'web'", [EXAMPLE_IMAGE_2])
        wait_for(lambda: (s := sql.converged("web")) and s["generation"] == 2, timeout_s=90,
                 what="updated")  # fmt: skip
        wait_for(lambda: len(containers.find("web")) == 3, what="old ones gone")
        sql("UPDATE deployments SET replicas = 1 WHERE name = 'web'")
        wait_for(lambda: (s := sql.converged("web")) and s["generation"] == 3, what="scaled down")
        wait_for(lambda: len(containers.find("web")) == 1, what="surplus gone")
    result = traffic.report
    report(
        capsys,
        f"update + scale down under load: {result.sent} requests, {result.failed} failed, "
        f"{result.resent} resent after an idle keep-alive close, {result.rate:.0f}/s",
    )
    assert result.sent > 200
    if result.failed:  # the story of the rollout, to read against the failures' times
        print(*(f"{e['t']:.3f} {e['message']}" for e in sql(TIMELINE)), sep="\n")
    assert result.failed == 0, result.failures
    assert result.resent == 0, "no kept-alive connection was closed under the client"
    assert not before & {c["Id"] for c in containers.find("web")}, "every replica was replaced"
    drained = sql(
        "SELECT id, kind, action, message FROM deployment_events WHERE deployment = 'web' "
        "AND (message LIKE '%%out of the routes%%' OR action = 'remove') ORDER BY id"
    )
    first_remove = next(i for i, e in enumerate(drained) if e["action"] == "remove")
    assert first_remove > 0 and "out of the routes" in drained[first_remove - 1]["message"]


def test_a_broken_update_is_rolled_back_under_load_and_undone(
    sql: Sql,
    start_daemon: Callable[..., Daemon],
    proxy: PrivateHaproxy,
    containers: Containers,
    capsys: pytest.CaptureFixture[str],
) -> None:
    start(start_daemon, proxy)
    rollout = {"progress_deadline_s": 4}
    sql.insert("web", replicas=2, healthcheck=HEALTH, routes=ROUTE, rollout=rollout)
    wait_for(lambda: sql.converged("web"), what="web converged")
    wait_for(lambda: answers(proxy, "web.berth.test"), what="routed")
    serving = {c["Id"] for c in containers.find("web")}
    broken = {**HEALTH, "test": ["CMD", "false"]}  # never healthy
    with Traffic(proxy.http_addr, "web.berth.test", rate=200, max_seconds=120) as traffic:
        sql(
            "UPDATE deployments SET image = %s, healthcheck = %s WHERE name = 'web'",
            [EXAMPLE_IMAGE_2, json.dumps(broken)],
        )
        status = wait_for(
            lambda: (s := sql.status("web")) and s["phase"] == "rolled_back" and s,
            timeout_s=60,
            what="rolled back",
        )
        wait_for(lambda: {c["Id"] for c in containers.find("web")} == serving, what="new ones gone")
    result = traffic.report
    report(capsys, f"broken update under load: {result.sent} requests, {result.failed} failed")
    assert result.failed == 0, result.failures
    assert status["serving_revision"] == 1 and not status["converged"]
    assert "progress deadline (4s)" in status["message"] or "rolled back" in status["message"]
    history = berth_ok(sql.url, "rollout", "history", "web")
    assert "rolled_back" in history and "serving" in history

    undone = berth_ok(sql.url, "rollout", "undo", "web")
    assert "revision 1" in undone
    wait_for(lambda: (s := sql.converged("web")) and s["generation"] == 3, what="undone, active")
    assert {c["Id"] for c in containers.find("web")} == serving, "the same containers serve"


def converged_at(sql: Sql, generation: int) -> bool:
    status = sql.converged("web")
    return status is not None and status["generation"] == generation


@pytest.mark.skipif(not load_tools.available(), reason="wrk and hey: deploy/setup-host.sh")
def test_real_clients_with_and_without_keep_alive_see_no_failure(
    sql: Sql,
    start_daemon: Callable[..., Daemon],
    proxy: PrivateHaproxy,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """wrk (16 kept-alive connections, never resends) and hey (a connection per request)
    at once, through two updates, a scale 3 -> 4 -> 3 and another deployment's route
    added and removed: not one error or non-2xx answer."""
    start(start_daemon, proxy)
    sql.insert("web", replicas=3, healthcheck=HEALTH, routes=ROUTE)
    wait_for(lambda: sql.converged("web"), what="web converged")
    wait_for(lambda: answers(proxy, "web.berth.test"), what="routed")
    seconds = 75
    reports: list[load_tools.LoadReport] = []
    host = "web.berth.test"

    def wrk() -> None:
        reports.append(load_tools.wrk(proxy.http_addr, host, 16, seconds))

    def hey() -> None:
        reports.append(load_tools.hey(proxy.http_addr, host, 4, seconds))

    tools = [threading.Thread(target=wrk), threading.Thread(target=hey)]
    for tool in tools:
        tool.start()
    started = time.monotonic()
    wait_for(lambda: answers(proxy, "web.berth.test"), what="load running")
    for generation, change in enumerate(
        [
            ("image = %s", [EXAMPLE_IMAGE_2]),
            ("replicas = 4", []),
            ("image = %s", [EXAMPLE_IMAGE]),
            ("replicas = 3", []),
        ],
        start=2,
    ):
        sql(f"UPDATE deployments SET {change[0]} WHERE name = 'web'", change[1])
        wait_for(partial(converged_at, sql, generation), timeout_s=60, what=f"gen {generation}")
    sql.insert("other", replicas=1, routes=[{"host": "other.berth.test", "port": 8080}])
    wait_for(lambda: answers(proxy, "other.berth.test"), what="the other route")
    sql("DELETE FROM deployments WHERE name = 'other'")
    wait_for(lambda: get(proxy, "other.berth.test")[0] == 404, what="the other route gone")
    changed_s = time.monotonic() - started
    for tool in tools:
        tool.join(seconds + 60)
    label = "real clients through the changes"
    clients_saw_no_failure(capsys, label, reports, changed_s, seconds, proxy)


def clients_saw_no_failure(
    capsys: pytest.CaptureFixture[str],
    label: str,
    reports: list[load_tools.LoadReport],
    changed_s: float,
    seconds: float,
    proxy: PrivateHaproxy,
) -> None:
    """Report what each real client saw; the changes ran inside the load, both tools sent
    enough to mean something, and not one request failed (else the tools' own words and
    the requests the proxy logged as failed or retried)."""
    report(
        capsys,
        f"{label} ({changed_s:.0f} s of {seconds:g} s): "
        + "; ".join(
            f"{r.tool}: {r.requests} requests, {r.errors} errors, {r.non_2xx} non-2xx"
            for r in reports
        ),
    )
    assert changed_s < seconds, "the changes ran inside the load"
    assert len(reports) == 2 and all(r.requests > 1000 for r in reports), reports
    failed = [f"{r.tool}: {r.errors} errors ({r.detail}), {r.non_2xx} non-2xx" for r in reports]
    proxy_said = "\n".join(proxy.request_log())
    assert all(r.failed == 0 for r in reports), "; ".join(failed) + "\nproxy:\n" + proxy_said
