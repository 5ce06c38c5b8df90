"""The clients benchmark (`berth bench run clients`): real HTTP load tools through Berth's
proxy while deployments change, against the same load while nothing changes.

Called by `controller.bench.runner`. A private HAProxy fronts a 3-replica deployment with a
route; `wrk` (kept-alive connections) and then `hey -disable-keepalive` (a connection per
request) send to it on loopback, each bounded by its duration. During each run: image
updates one after another, a scale 3 -> 6 -> 3, and another deployment's route added and
removed. Printed: requests, connection errors, non-2xx answers and the slowest answer,
beside the same tool straight to one replica's published port (the app alone, no proxy)
and through the proxy with nothing changing. Asserts nothing: it measures what a client
that never resends sees.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

from controller.bench.harness import BENCH_IMAGE, Environment, poll
from controller.bench.rollouts import HEALTH
from controller.bench.scenarios import BENCH_IMAGE_2
from controller.gateways import load_tools
from controller.gateways.haproxy_server import PrivateHaproxy
from controller.gateways.load_tools import LoadReport

HOST = "clients.bench.test"


def _converged(env: Environment, name: str, generation: int, replicas: int) -> bool:
    return bool(
        env.sql(
            "SELECT 1 FROM deployment_overview WHERE name = %s AND converged "
            "AND observed_generation = %s AND ready_replicas = %s",
            [name, generation, replicas],
        )
    )


def _generation(env: Environment, name: str) -> int:
    return int(
        env.sql("SELECT generation FROM deployments WHERE name = %s", [name])[0]["generation"]
    )


def _wait_converged(env: Environment, generation: int, replicas: int) -> None:
    poll(lambda: _converged(env, "web", generation, replicas), timeout_s=120, interval_s=0.05)


def _changes(env: Environment, updates: int) -> Callable[[], str]:
    """The changes made under load; returns a description of what was done."""

    def change() -> str:
        for index in range(updates):
            image = BENCH_IMAGE_2 if index % 2 == 0 else BENCH_IMAGE
            env.sql("UPDATE deployments SET image = %s WHERE name = 'web'", [image])
            generation = _generation(env, "web")
            _wait_converged(env, generation, 3)
        for replicas in (6, 3):
            env.sql("UPDATE deployments SET replicas = %s WHERE name = 'web'", [replicas])
            generation = _generation(env, "web")
            _wait_converged(env, generation, replicas)
        other = [{"host": "other.bench.test", "port": 8080}]
        env.sql(
            "INSERT INTO deployments (name, image, replicas, routes) VALUES ('other', %s, 1, %s)",
            [BENCH_IMAGE, json.dumps(other)],
        )
        poll(lambda: _converged(env, "other", 1, 1), timeout_s=120, interval_s=0.05)
        env.sql("DELETE FROM deployments WHERE name = 'other'")
        poll(lambda: not env.containers("other"), timeout_s=120, interval_s=0.05)
        return f"{updates} updates, scale 3 -> 6 -> 3, another route added and removed"

    return change


def _under(
    tool: Callable[[int], LoadReport], seconds: int, change: Callable[[], str]
) -> tuple[LoadReport, str, float]:
    reports: list[LoadReport] = []
    runner = threading.Thread(target=lambda: reports.append(tool(seconds)), daemon=True)
    runner.start()
    time.sleep(1)  # the tool's connections open first
    started = time.monotonic()
    done = change()
    took = time.monotonic() - started
    runner.join(seconds + 60)
    return reports[0], done, took


def _row(label: str, report: LoadReport) -> None:
    slowest = "-" if report.slowest_s is None else f"{report.slowest_s:.2f}s"
    print(f"{label:<58}{report.requests:>10}{report.errors:>8}{report.non_2xx:>9}{slowest:>9}")


def run(env: Environment, updates: int, seconds: int) -> None:
    if not load_tools.available():
        print("\n== clients: skipped (wrk and hey are not installed: deploy/setup-host.sh)")
        return
    proxy = PrivateHaproxy()
    try:
        env.start_daemon(
            BERTH_PROXY_ADMIN_URL=proxy.admin_url, BERTH_PROXY_HTTP_ADDR=proxy.http_addr
        )
        route = [{"host": HOST, "port": 8080}]
        env.sql(
            "INSERT INTO deployments (name, image, replicas, healthcheck, routes) "
            "VALUES ('web', %s, 3, %s, %s)",
            [BENCH_IMAGE, json.dumps(HEALTH), json.dumps(route)],
        )
        poll(lambda: _converged(env, "web", 1, 3), timeout_s=120, interval_s=0.05)
        tools: list[tuple[str, Callable[[int], LoadReport]]] = [
            ("wrk", lambda s: load_tools.wrk(proxy.http_addr, HOST, 16, s)),
            ("hey", lambda s: load_tools.hey(proxy.http_addr, HOST, 8, s)),
        ]

        def direct() -> str:
            """A serving replica's published address, now (the changes replace them)."""
            for replica in env.containers("web"):
                found = replica.address(8080)
                if replica.ready and found is not None:
                    return f"{found[0]}:{found[1]}"
            raise RuntimeError("no ready replica of web")

        straight: list[tuple[str, Callable[[int], LoadReport]]] = [
            ("wrk", lambda s: load_tools.wrk(direct(), HOST, 16, s)),
            ("hey", lambda s: load_tools.hey(direct(), HOST, 8, s)),
        ]
        print(f"\n== clients: real load tools through the proxy ({seconds} s each)")
        print(f"{'run':<58}{'requests':>10}{'errors':>8}{'non-2xx':>9}{'slowest':>9}")
        for (_, tool), (_, alone) in zip(tools, straight, strict=True):
            base = alone(max(5, seconds // 4))
            _row(f"{base.tool}, one replica, no proxy", base)
            idle = tool(max(5, seconds // 4))
            _row(f"{idle.tool}, nothing changing", idle)
            busy, done, took = _under(tool, seconds, _changes(env, updates))
            _row(f"{busy.tool}, while changing", busy)
            print(f"  changes: {done} in {took:.1f}s (within the run: {took <= seconds})")
            if busy.detail:
                print(f"  errors: {busy.detail}")
    finally:
        proxy.close()
