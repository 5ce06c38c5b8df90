"""Benchmark scenarios: Berth against its baselines, measured side by side in one run.

Called by `controller.bench.runner` (the `berth bench` command). Every scenario prints Berth's
figure, the baseline's and their ratio; none asserts anything. Figures are wall-clock on a
shared machine: compare ratios within one run, not absolute numbers across runs.
"""

from __future__ import annotations

import time
import tracemalloc
import uuid
from dataclasses import dataclass

from controller.bench import baselines
from controller.bench.cold import HEALTHCHECK_DOCKER, insert
from controller.bench.harness import BENCH_IMAGE, Environment, EventCounter, percentile, poll
from controller.model.replicas import ObservedReplica
from controller.policy.planner import DesiredDeployment, plan

BENCH_IMAGE_2 = "berth-example/busybox:2"


@dataclass
class Row:
    measure: str
    berth: float
    baseline: float | None
    baseline_name: str

    def line(self) -> str:
        if self.baseline is None:
            return f"{self.measure:<44}{self.berth:>10.3f}s{'-':>12}{'-':>8}  {self.baseline_name}"
        ratio = self.berth / self.baseline if self.baseline else float("nan")
        return (
            f"{self.measure:<44}{self.berth:>10.3f}s{self.baseline:>11.3f}s{ratio:>7.2f}x"
            f"  {self.baseline_name}"
        )


def print_rows(title: str, rows: list[Row]) -> None:
    print(f"\n== {title}")
    print(f"{'measure':<44}{'berth':>11}{'baseline':>12}{'ratio':>8}  baseline")
    for row in rows:
        print(row.line())


def cold(env: Environment, count: int, threads: int, healthcheck: bool, swarm: bool) -> list[Row]:
    """N deployments of 1 replica inserted in one transaction -> all running (healthy)."""
    run = uuid.uuid4().hex[:6]
    floor = baselines.docker_py_create_start(
        count, threads, BENCH_IMAGE, run, HEALTHCHECK_DOCKER if healthcheck else None
    )
    baselines.remove_baseline(run)
    names = [f"cold-{i:04d}" for i in range(count)]
    counter = EventCounter(env, "health_status: healthy" if healthcheck else "start")
    started = time.monotonic()
    insert(env, names, BENCH_IMAGE, healthcheck)
    counter.wait(count)
    running = time.monotonic() - started
    poll(lambda: env.converged(names), timeout_s=600, interval_s=0.02)
    converged = time.monotonic() - started
    variant = " (healthy)" if healthcheck else ""
    rows = [
        Row(
            f"{count} deployments -> running{variant}",
            running,
            floor,
            f"docker-py, {threads} threads",
        ),
        Row(
            f"{count} deployments -> converged rows{variant}",
            converged,
            floor,
            f"docker-py, {threads} threads",
        ),
    ]
    if swarm and not healthcheck:
        seconds = baselines.swarm_service(count, BENCH_IMAGE, run)
        rows.append(
            Row(
                f"{count} deployments -> running",
                running,
                seconds,
                "Swarm service" if seconds else "Swarm unavailable",
            )
        )
    return rows


def update(env: Environment, count: int, threads: int) -> list[Row]:
    """Change the image of N running deployments -> all replaced: the new containers
    started and the old ones gone (Berth's default start-first rollout)."""
    names = [f"cold-{i:04d}" for i in range(count)]
    if not env.converged(names):
        env.clear()
        insert(env, names, BENCH_IMAGE, False)
        poll(lambda: env.converged(names), timeout_s=1200)
    old_hashes = {c.spec_hash for c in env.containers()}
    counter = EventCounter(env, "start")  # every start from now on is a replacement's
    started = time.monotonic()
    env.sql("UPDATE deployments SET image = %s WHERE name = ANY(%s)", [BENCH_IMAGE_2, names])
    counter.wait(count)

    def replaced() -> bool:  # start-first: the old ones leave once the new ones run
        listed = env.containers()
        return len(listed) == count and not {c.spec_hash for c in listed} & old_hashes

    poll(replaced, timeout_s=600, interval_s=0.05)
    berth = time.monotonic() - started
    run = uuid.uuid4().hex[:6]
    baselines.docker_py_create_start(count, threads, BENCH_IMAGE, run)
    floor = baselines.docker_py_replace(count, threads, BENCH_IMAGE_2, run)
    baselines.remove_baseline(run)
    return [
        Row(
            f"{count} deployments: new image -> replaced",
            berth,
            floor,
            f"docker-py stop+rm+create+start, {threads} threads",
        )
    ]


def latency(env: Environment, trials: int) -> list[Row]:
    """One INSERT -> its container running, on an idle daemon, `trials` times."""
    env.clear()
    berth: list[float] = []
    # Wait on Docker's own `start` event rather than polling its list: polling would load
    # the engine being measured, which the docker-py floor does not do.
    events = env.docker.container_events()
    try:
        for index in range(trials):
            name = f"lat-{index:03d}"
            started = time.monotonic()
            env.sql("INSERT INTO deployments (name, image) VALUES (%s, %s)", [name, BENCH_IMAGE])
            for deployment, cluster, action in events:
                if (deployment, cluster, action) == (name, env.cluster, "start"):
                    break
            berth.append(time.monotonic() - started)
    finally:
        env.docker.close_event_streams()
    run = uuid.uuid4().hex[:6]
    floor = [baselines.docker_py_single(BENCH_IMAGE, run, index) for index in range(trials)]
    baselines.remove_baseline(run)
    env.clear()
    return [
        Row(
            f"INSERT -> running, p50 of {trials}",
            percentile(berth, 0.5),
            percentile(floor, 0.5),
            "docker-py create+start",
        ),
        Row(
            f"INSERT -> running, p99 of {trials}",
            percentile(berth, 0.99),
            percentile(floor, 0.99),
            "docker-py create+start",
        ),
    ]


def steady(env: Environment, count: int, port: int, idle_s: float) -> list[str]:
    """N converged deployments: the cost of one full resync, idle CPU, resident memory."""
    names = [f"steady-{i:04d}" for i in range(count)]
    env.clear()
    started = time.monotonic()
    insert(env, names, BENCH_IMAGE, False)
    poll(lambda: env.converged(names), timeout_s=3600, interval_s=0.5)
    lines = [f"{count} deployments converged from cold in {time.monotonic() - started:.1f}s"]

    def resyncs(metrics: dict[str, float]) -> float:
        return metrics.get('berth_reconcile_passes_total{scope="full"}', 0.0)

    # Wait for quiescence: the converge's last delayed re-checks must have run, or their
    # passes (and their Docker list calls) would be counted as the resync's.
    def quiet_for(seconds: float) -> bool:
        key = 'berth_reconcile_passes_total{scope="deployment"}'
        first = env.metrics(port).get(key, 0.0)
        time.sleep(seconds)
        return env.metrics(port).get(key, 0.0) == first

    poll(lambda: quiet_for(5.0), timeout_s=600, interval_s=0.0)
    before = env.metrics(port)
    poll(lambda: resyncs(env.metrics(port)) >= resyncs(before) + 3, timeout_s=600, interval_s=0.2)
    after = env.metrics(port)
    passes = resyncs(after) - resyncs(before)

    def delta(prefix: str) -> float:
        return sum(v - before.get(k, 0.0) for k, v in after.items() if k.startswith(prefix))

    full_time = (
        after['berth_reconcile_duration_seconds_sum{scope="full"}']
        - before['berth_reconcile_duration_seconds_sum{scope="full"}']
    ) / passes
    # In steady state only the resync calls Docker; SQL also carries the leader's heartbeat
    # (every 0.5 s) and node reports (every 2 s), counted apart.
    docker_calls = delta("berth_docker_request_duration_seconds_count") / passes
    list_time = delta('berth_docker_request_duration_seconds_sum{call="list"}') / passes
    resync_ops = ("select_deployments", "prune_mutations", "fenced_write")
    sql_ops = (
        sum(
            delta(f'berth_postgres_query_duration_seconds_count{{operation="{op}"}}')
            for op in resync_ops
        )
        / passes
    )
    sql_time = (
        sum(
            delta(f'berth_postgres_query_duration_seconds_sum{{operation="{op}"}}')
            for op in resync_ops
        )
        / passes
    )
    background = (
        sum(
            delta(f'berth_postgres_query_duration_seconds_count{{operation="{op}"}}')
            for op in ("heartbeat", "upsert_node")
        )
        / passes
    )
    deployment_passes = delta('berth_reconcile_passes_total{scope="deployment"}') / passes
    own = max(full_time - list_time - sql_time, 0.0)
    lines += [
        f"full resync wall time: {full_time * 1000:.1f} ms per pass (Docker list "
        f"{list_time * 1000:.1f} ms, SQL {sql_time * 1000:.1f} ms, "
        f"Berth's own {own * 1000:.1f} ms)",
        f"calls per full resync: {docker_calls:.1f} Docker, {sql_ops:.1f} SQL, "
        f"{deployment_passes:.1f} deployment passes triggered "
        f"(and {background:.0f} heartbeat/node-report queries between two resyncs)",
    ]
    cpu_before = env.metrics(port)["process_cpu_seconds_total"]
    time.sleep(idle_s)
    sample = env.metrics(port)
    cpu = (sample["process_cpu_seconds_total"] - cpu_before) / idle_s * 100
    lines += [
        f"idle CPU over {idle_s:.0f}s: {cpu:.2f}% of one core",
        f"resident memory: {sample['process_resident_memory_bytes'] / 2**20:.0f} MiB",
    ]
    env.clear(timeout_s=3600)
    return lines


def _synthetic(count: int) -> tuple[list[DesiredDeployment], list[ObservedReplica]]:
    desired = [DesiredDeployment(f"d{i:06d}", 1, "h1") for i in range(count)]
    observed = []
    for i in range(count):
        if i % 100 == 0:
            continue  # 1% missing
        spec_hash = "h0" if i % 100 == 1 else "h1"  # 1% stale
        observed.append(ObservedReplica(f"c{i}", f"berth-d{i:06d}-0", f"d{i:06d}", 0, spec_hash))
    return desired, observed


def planner(sizes: list[int]) -> list[str]:
    """The pure planner on synthetic fleets (1% missing, 1% stale): time and memory."""
    lines = [f"{'deployments':>12}{'best of 3':>12}{'per deployment':>16}{'peak memory':>14}"]
    base: float | None = None
    for size in sizes:
        desired, observed = _synthetic(size)
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            result = plan(desired, observed)
            timings.append(time.perf_counter() - started)
        assert len(result) == size // 50
        tracemalloc.start()
        plan(desired, observed)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        best = min(timings)
        per = best / size
        base = base or per
        lines.append(
            f"{size:>12}{best * 1000:>10.1f}ms{per * 1e6:>13.2f}us{peak / 2**20:>11.1f}MiB"
            f"   x{per / base:.2f} per deployment vs {sizes[0]}"
        )
    return lines
