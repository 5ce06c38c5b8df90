"""The failover benchmark: SIGKILL the leader of a replica set while deployments change.

Called by `controller.bench.runner` and `berth bench failover`. Reports kill -> the new
leader's first mutation and kill -> everything converged again, per trial.
"""

from __future__ import annotations

import signal
import statistics
import time
from dataclasses import dataclass

from controller.bench.harness import BENCH_IMAGE, Environment, percentile, poll
from controller.gateways.processes import free_port, spawn_replica


@dataclass
class FailoverResult:
    to_first_action_s: list[float]
    to_converged_s: list[float]


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
