"""The `rollout` benchmark: start-first updates behind a real proxy, under load.

Called by `controller.bench.runner` (`berth bench run rollout`). A private HAProxy
(`controller.gateways.haproxy_server`) fronts the deployments; a load generator on loopback
(`controller.gateways.traffic`) sends at least 200 requests a second through it. Printed
side by side in one run:
- 10 consecutive image updates of a 3-replica deployment: failed requests, and each
  update's time against a docker-py start-first baseline (per slot, one at a time as
  Berth's max_surge 1: create and start the new container, wait until healthy, stop and
  remove the old one);
- one broken update (a healthcheck that never passes): failed requests, and the time
  until it is rolled back against its progress deadline;
- a replica becoming healthy -> its address in the proxy's route: p50 / p99;
- 20 deployments x 3 replicas updated at once: total time against the same baseline run
  for all 60 replicas at once.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from controller.bench import baselines
from controller.bench.harness import BENCH_IMAGE, Environment, percentile, poll
from controller.bench.scenarios import Row, print_rows
from controller.gateways.haproxy import HaproxyGateway
from controller.gateways.haproxy_server import PrivateHaproxy
from controller.gateways.traffic import Traffic
from controller.model.errors import BerthError

BENCH_IMAGE_2 = "berth-example/busybox:2"
PARALLELISM = 8  # Berth's workers (its default) and the baseline's threads
PROBE = ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
HEALTH = {"test": PROBE, "interval_s": 1, "timeout_s": 5, "retries": 3}
BASELINE_HEALTH = {"test": PROBE, "interval": 1_000_000_000, "timeout": 5_000_000_000, "retries": 3}


def _generation_done(env: Environment, name: str, generation: int, replicas: int) -> bool:
    rows = env.sql("SELECT converged, generation FROM deployment_overview WHERE name = %s", [name])
    if not rows or not rows[0]["converged"] or rows[0]["generation"] != generation:
        return False
    return len(env.containers(name)) == replicas


def _update(env: Environment, names: list[str], image: str) -> float:
    generations = {
        row["name"]: row["generation"] + 1
        for row in env.sql("SELECT name, generation FROM deployments WHERE name = ANY(%s)", [names])
    }
    started = time.monotonic()
    env.sql("UPDATE deployments SET image = %s WHERE name = ANY(%s)", [image, names])
    poll(
        lambda: all(_generation_done(env, n, generations[n], 3) for n in names),
        timeout_s=600,
        interval_s=0.05,
    )
    return time.monotonic() - started


class RouteLatency:
    """Docker's health_status: healthy event of a replica -> its address in the proxy."""

    def __init__(self, env: Environment, proxy: PrivateHaproxy) -> None:
        self.env, self.proxy = env, proxy
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RouteLatency:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self.env.docker.close_event_streams()
        self._thread.join(timeout=10)

    def _routed(self) -> str:
        state = HaproxyGateway(self.proxy.admin_url).observe()
        return " ".join(
            s.address for servers in state.servers.values() for s in servers.values() if s.serving
        )

    def _run(self) -> None:
        api = baselines._client()
        try:
            since = int(time.time())
            for event in api.events(
                since=since, decode=True, filters={"type": "container", "event": "health_status"}
            ):
                if self._stop.is_set():
                    return
                if "healthy" not in event.get("status", "") or "unhealthy" in event["status"]:
                    continue
                seen = time.monotonic()
                try:
                    container = api.inspect_container(event["id"])
                except Exception:  # removed meanwhile: not a sample
                    continue
                labels = container["Config"]["Labels"] or {}
                if labels.get("io.berth.cluster") != self.env.cluster:
                    continue
                bindings = (container["NetworkSettings"]["Ports"] or {}).get("8080/tcp") or []
                if not bindings:
                    continue
                address = f"127.0.0.1:{bindings[0]['HostPort']}"
                deadline = seen + 10
                while time.monotonic() < deadline and not self._stop.is_set():
                    try:
                        routed = self._routed()
                    except BerthError:
                        routed = ""
                    if address in routed:
                        self.samples.append(time.monotonic() - seen)
                        break
                    time.sleep(0.002)
        except Exception:
            return
        finally:
            api.close()


def _baseline_start_first(count: int, image: str, run: str) -> float:
    """docker-py, start-first per slot (one slot at a time per deployment, PARALLELISM
    deployments at once, as Berth's workers): create + start the new container, wait
    healthy, stop and remove the old."""
    api = baselines._client()
    deployments = count // 3

    def slot(deployment: int, replica: int, image_now: str) -> None:
        name = f"bench-{run}-{deployment}-{replica}-{uuid.uuid4().hex[:4]}"
        slot_label = f"{deployment}-{replica}"
        labels = {baselines.BASELINE_LABEL: run, "berth-bench.slot": slot_label}
        created = api.create_container(
            image_now, name=name, labels=labels, healthcheck=BASELINE_HEALTH
        )
        mine = [f"berth-bench.slot={slot_label}", f"{baselines.BASELINE_LABEL}={run}"]
        old = api.containers(filters={"label": mine})
        api.start(created["Id"])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = api.inspect_container(created["Id"])["State"]
            if (state.get("Health") or {}).get("Status") == "healthy":
                break
            time.sleep(0.05)
        for container in old:
            if container["Id"] != created["Id"]:
                api.stop(container["Id"], timeout=10)
                api.remove_container(container["Id"], force=True)

    def deployment(index: int, image_now: str) -> None:
        for replica in range(3):
            slot(index, replica, image_now)

    threads = min(PARALLELISM, max(1, deployments))
    with ThreadPoolExecutor(threads) as pool:  # the first fleet
        list(pool.map(lambda i: deployment(i, BENCH_IMAGE), range(deployments)))
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: deployment(i, image), range(deployments)))
    elapsed = time.monotonic() - started
    api.close()
    baselines.remove_baseline(run)
    return elapsed


def run(env: Environment, updates: int, fleet: int) -> None:
    proxy = PrivateHaproxy()
    try:
        env.start_daemon(
            BERTH_PROXY_ADMIN_URL=proxy.admin_url,
            BERTH_PROXY_HTTP_ADDR=proxy.http_addr,
            BERTH_CONCURRENCY=str(PARALLELISM),
        )
        _single(env, proxy, updates)
        env.clear()
        _fleet(env, fleet)
        env.clear()
    finally:
        proxy.close()


def _single(env: Environment, proxy: PrivateHaproxy, updates: int) -> None:
    route = [{"host": "roll.bench.test", "port": 8080}]
    env.sql(
        "INSERT INTO deployments (name, image, replicas, healthcheck, routes, rollout) "
        "VALUES ('roll', %s, 3, %s, %s, %s)",
        [
            BENCH_IMAGE,
            json.dumps(HEALTH),
            json.dumps(route),
            json.dumps({"progress_deadline_s": 10}),
        ],
    )
    poll(lambda: _generation_done(env, "roll", 1, 3), timeout_s=120, interval_s=0.05)
    times: list[float] = []
    with (
        RouteLatency(env, proxy) as latency,
        Traffic(proxy.http_addr, "roll.bench.test", rate=250, max_seconds=900) as traffic,
    ):
        poll(lambda: traffic.report.sent > 50, timeout_s=30)
        for index in range(updates):
            times.append(_update(env, ["roll"], BENCH_IMAGE_2 if index % 2 == 0 else BENCH_IMAGE))
        updates_report = TrafficSnapshot.of(traffic)
        started = time.monotonic()
        broken = {**HEALTH, "test": ["CMD", "false"]}
        image = BENCH_IMAGE_2 if updates % 2 == 0 else BENCH_IMAGE
        env.sql(
            "UPDATE deployments SET image = %s, healthcheck = %s WHERE name = 'roll'",
            [image, json.dumps(broken)],
        )
        poll(
            lambda: (
                env.sql("SELECT phase FROM deployment_status WHERE name = 'roll'")[0]["phase"]
                == "rolled_back"
                and len(env.containers("roll")) == 3
            ),
            timeout_s=120,
            interval_s=0.05,
        )
        rolled_back = time.monotonic() - started
    total = traffic.report
    run_id = uuid.uuid4().hex[:6]
    floor = [
        _baseline_start_first(3, BENCH_IMAGE_2, f"{run_id}{i}") for i in range(min(updates, 3))
    ]
    print_rows(
        f"rollout: {updates} image updates of 3 replicas behind HAProxy, start-first, under load",
        [
            Row(
                f"one update, median of {updates}",
                percentile(times, 0.5),
                percentile(floor, 0.5),
                "docker-py start-first, slot by slot",
            ),
            Row(f"one update, slowest of {updates}", max(times), max(floor), "docker-py"),
            Row("broken update -> rolled back", rolled_back, 10.0, "its progress deadline"),
        ],
    )
    print(
        f"  requests through the proxy: {total.sent} at {total.rate:.0f}/s; failed during the "
        f"{updates} updates: {updates_report.failed}; failed in all (broken update too): "
        f"{total.failed}; resent after an idle keep-alive close: {total.resent}"
    )
    if total.failures:
        print(f"  failures: {total.failures[:3]}")
    samples = latency.samples or [float("nan")]
    print(
        f"  replica healthy -> in the route: p50 {percentile(samples, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(samples, 0.99) * 1000:.0f} ms over {len(latency.samples)} replicas"
    )


class TrafficSnapshot:
    def __init__(self, sent: int, failed: int) -> None:
        self.sent, self.failed = sent, failed

    @classmethod
    def of(cls, traffic: Traffic) -> TrafficSnapshot:
        return cls(traffic.report.sent, traffic.report.failed)


def _fleet(env: Environment, count: int) -> None:
    names = [f"fleet-{i:02d}" for i in range(count)]
    env.sql(
        "INSERT INTO deployments (name, image, replicas, healthcheck) "
        "SELECT unnest(%s::text[]), %s, 3, %s::jsonb",
        [names, BENCH_IMAGE, json.dumps(HEALTH)],
    )
    poll(lambda: all(_generation_done(env, n, 1, 3) for n in names), timeout_s=600, interval_s=0.2)
    berth = _update(env, names, BENCH_IMAGE_2)
    floor = _baseline_start_first(count * 3, BENCH_IMAGE_2, uuid.uuid4().hex[:6])
    print_rows(
        f"rollout: {count} deployments x 3 replicas updated at once",
        [Row("all updated", berth, floor, "docker-py start-first, same parallelism")],
    )
