"""Cold converge against the engine's floor, in interleaved pairs (`berth bench run cold`).

Called by `controller.bench.runner`. N one-replica deployments are inserted in one
transaction; Berth's time ends when every row says converged (`deployment_overview`:
the current generation observed, ready = desired) and a list of the engine shows each
container running (healthy, in the healthcheck variant). The floor is docker-py creating
and starting the same containers on as many threads as Berth's workers
(`BERTH_CONCURRENCY`), until they run (or are healthy). Each pair runs both, the order
alternating, so that drifts of a shared machine hit both sides alike; the median ratio of
the pairs is the figure. Beside it, what one deployment costs on Berth's side, read from
the daemon's /metrics: Postgres operations (each a round trip: a statement or a
transaction), Docker calls and passes; and under each pair, the CPU seconds each side's run
took from the machine, the daemon, Postgres and the engine (`controller.bench.cpu`).
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from controller.bench import baselines, cpu
from controller.bench.harness import (
    BENCH_IMAGE,
    Daemon,
    Environment,
    EventCounter,
    poll,
    quiet_machine,
)
from controller.gateways.processes import Profiler
from controller.model.replicas import Health, RunState

# Probing 100 containers every second saturates a 2-core machine (probes time out and
# replicas turn unhealthy); every 3 s with a 10 s timeout does not. Both sides use it.
HEALTHCHECK_ROW = {
    "test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"],
    "interval_s": 3,
    "timeout_s": 10,
    "retries": 3,
}
HEALTHCHECK_DOCKER = {
    "test": HEALTHCHECK_ROW["test"],
    "interval": 3_000_000_000,
    "timeout": 10_000_000_000,
    "retries": 3,
}
COUNTED = (
    ("berth_postgres_query_duration_seconds_count", "operation", "postgres"),
    ("berth_docker_request_duration_seconds_count", "call", "docker"),
    ("berth_reconcile_passes_total", "scope", "passes"),
)


def insert(env: Environment, names: list[str], image: str, healthcheck: bool) -> None:
    env.sql(
        "INSERT INTO deployments (name, image, replicas, healthcheck) "
        "SELECT unnest(%s::text[]), %s, 1, %s::jsonb",
        [names, image, json.dumps(HEALTHCHECK_ROW) if healthcheck else None],
    )


@dataclass
class Pair:
    berth_s: float
    floor_s: float
    berth_cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds, by process
    floor_cpu: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.berth_s / self.floor_s


@dataclass
class Series:
    count: int
    healthcheck: bool
    pairs: list[Pair] = field(default_factory=list)
    # Per deployment, summed over the pairs then divided: {"docker create": 1.0, ...}
    costs: dict[str, float] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(p.ratio for p in self.pairs)


def _counts(env: Environment, port: int) -> dict[str, float]:
    values = env.metrics(port)
    counts: dict[str, float] = defaultdict(float)
    for metric, label, kind in COUNTED:
        for key, value in values.items():
            if key.startswith(metric + "{"):
                name = key.split(f'{label}="', 1)[1].split('"', 1)[0]
                counts[f"{kind} {name}"] += value
    return counts


def berth_side(
    env: Environment, daemon: Daemon, count: int, healthcheck: bool, profile: Path | None = None
) -> tuple[float, dict[str, float], dict[str, float]]:
    """Seconds from the INSERT to every row converged and every container running (healthy),
    the daemon's counts and the CPU seconds by process over that time; with `profile`,
    py-spy's samples of the daemon over that time are written there."""
    names = [f"cold-{i:04d}" for i in range(count)]
    port = daemon.port
    before = _counts(env, port)
    profiler = Profiler(daemon.pid, profile) if profile is not None else None
    # Docker's events say when the last container runs (or is healthy) without a query;
    # only then are the rows polled, so that the measuring loads neither side.
    counter = EventCounter(env, "health_status: healthy" if healthcheck else "start")
    cpu_before = cpu.sample(daemon.pid)
    started = time.monotonic()
    insert(env, names, BENCH_IMAGE, healthcheck)
    counter.wait(count)
    poll(lambda: env.converged(names), timeout_s=600, interval_s=0.01)
    elapsed = time.monotonic() - started
    spent = cpu.spent(cpu_before, cpu.sample(daemon.pid))
    if profiler is not None:
        print(f"py-spy samples of the daemon (collapsed stacks): {profiler.stop()}")
    after = _counts(env, port)
    listed = env.containers()
    running = [
        c
        for c in listed
        if c.state == RunState.RUNNING and (not healthcheck or c.health == Health.HEALTHY)
    ]
    if len(running) != count or len(listed) != count:
        raise AssertionError(f"converged rows but {len(running)} of {count} running")
    env.clear()
    return elapsed, {key: after[key] - before.get(key, 0.0) for key in after}, spent


def floor_side(
    daemon: Daemon, count: int, threads: int, healthcheck: bool
) -> tuple[float, dict[str, float]]:
    """The floor's seconds, and the CPU seconds by process over them (Berth's idle)."""
    run = uuid.uuid4().hex[:6]
    try:
        before = cpu.sample(daemon.pid)
        elapsed = baselines.docker_py_create_start(
            count, threads, BENCH_IMAGE, run, HEALTHCHECK_DOCKER if healthcheck else None
        )
        return elapsed, cpu.spent(before, cpu.sample(daemon.pid))
    finally:
        baselines.remove_baseline(run)


def series(
    env: Environment,
    daemon: Daemon,
    count: int,
    pairs: int,
    threads: int,
    healthcheck: bool,
    profile: Path | None = None,
) -> Series:
    """`pairs` interleaved pairs, each printed as it ends (a long run shows what it has)."""
    found = Series(count, healthcheck)
    variant = " -> healthy" if healthcheck else " -> running"
    print(f"\n== cold converge: {count} deployments{variant}, rows converged", flush=True)
    print(f"{'pair':<6}{'berth':>10}{'floor':>10}{'ratio':>8}  floor: docker-py, {threads} threads")
    totals: dict[str, float] = defaultdict(float)
    for index in range(pairs):
        name = f"cold-{count}{'-healthy' if healthcheck else ''}-pair{index + 1}.txt"
        samples = profile / name if profile is not None else None
        # Each run starts on a quiet machine: the other's teardown done.
        if index % 2 == 0:
            quiet_machine()
            floor, floor_cpu = floor_side(daemon, count, threads, healthcheck)
            quiet_machine()
            berth, counts, berth_cpu = berth_side(env, daemon, count, healthcheck, samples)
        else:
            quiet_machine()
            berth, counts, berth_cpu = berth_side(env, daemon, count, healthcheck, samples)
            quiet_machine()
            floor, floor_cpu = floor_side(daemon, count, threads, healthcheck)
        pair = Pair(berth, floor, berth_cpu, floor_cpu)
        found.pairs.append(pair)
        first = "floor first" if index % 2 == 0 else "berth first"
        times = f"{pair.berth_s:>9.3f}s{pair.floor_s:>9.3f}s"
        print(f"{index + 1:<6}{times}{pair.ratio:>7.2f}x  {first}", flush=True)
        print(f"{'':<6}CPU seconds, Berth's run: {cpu.describe(berth_cpu)}")
        print(f"{'':<6}CPU seconds, the floor's: {cpu.describe(floor_cpu)}", flush=True)
        for key, value in counts.items():
            totals[key] += value
    found.costs = {
        key: value / (count * pairs) for key, value in sorted(totals.items()) if value > 0
    }
    return found


def print_summary(found: Series) -> None:
    ratios = ", ".join(f"{p.ratio:.2f}" for p in found.pairs)
    print(f"median ratio {found.median:.2f}x ({ratios})")
    costs = ", ".join(f"{key} {value:.2f}" for key, value in found.costs.items())
    print(f"per deployment, Berth's side: {costs}", flush=True)


def run(
    env: Environment,
    daemon: Daemon,
    sizes: tuple[int, ...],
    pairs: int,
    threads: int,
    healthcheck_variant: bool,
    swarm: bool,
    profile: Path | None = None,
) -> None:
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
    for count in sizes:
        print_summary(series(env, daemon, count, pairs, threads, False, profile))
        if healthcheck_variant:
            print_summary(series(env, daemon, count, pairs, threads, True, profile))
        if swarm:
            run_id = uuid.uuid4().hex[:6]
            seconds = baselines.swarm_service(count, BENCH_IMAGE, run_id)
            print(
                f"Swarm service, {count} one-task services -> running: "
                + (f"{seconds:.3f}s" if seconds else "Swarm unavailable")
            )
