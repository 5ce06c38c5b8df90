"""Benchmarks (`berth bench run SCENARIO...`): print figures side by side, never assert them.

Called by the CLI. Each scenario sets up what it needs on this machine (an embedded
Postgres unless --database-url is given, the local Docker engine), runs, prints a table
with ratios against a baseline measured in the same run, and removes what it made.

Scenarios: cold (N deployments inserted at once -> running; vs docker-py and a Swarm
service), latency (one INSERT -> running; vs one docker-py create+start), update (new image
for N deployments; vs docker-py stop/rm/create/start), steady (N converged deployments:
resync cost, idle CPU, memory), planner (the pure planner on synthetic fleets), build
(source -> running against git clone + docker build + docker run; the build queue at
concurrency 1 and 2; `controller.bench.builds`), rollout (start-first updates behind a
real HAProxy under load, a broken update rolled back, 20 x 3 at once;
`controller.bench.rollouts`), api (GET latency at 1,000 deployments, commit -> SSE
event, a cold converge with 200 stream clients; `controller.bench.api`), failover
(SIGKILL the leader; see `controller.bench.failover`), db-failover (the Postgres
primary lost and a standby promoted vs the same Postgres restarted;
`controller.bench.dbfailover`), swarm (N x 3 on a three-node
swarm vs docker-py, and a node lost vs Swarm alone; `controller.bench.swarm`),
swarm-source (source -> 3 nodes through a registry vs build + push + services by hand, and
rollouts across nodes under load vs Swarm's own; `controller.bench.swarm_source`), stops
(replicas ignoring SIGTERM: an update and deletions; `controller.bench.stops`), clients
(wrk and hey through the proxy during updates, a scale and others' route changes;
`controller.bench.clients`); and, only
when named, chaos (engine restarts, frozen leaders, Postgres restarts, leader kills;
`controller.bench.chaos`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from controller.bench import (
    api,
    builds,
    chaos,
    clients,
    cold,
    dbfailover,
    fullread,
    rollouts,
    scenarios,
    stops,
    swarm,
    swarm_source,
)
from controller.bench.failover import failover, print_failover
from controller.bench.harness import Environment

SCENARIOS = (
    "planner",
    "latency",
    "cold",
    "update",
    "steady",
    "build",
    "rollout",
    "api",
    "fullread",
    "failover",
    "db-failover",
    "swarm",
    "swarm-source",
    "stops",
    "clients",
)
# Run only when named: it stops and starts engines and databases, and takes minutes.
ON_REQUEST = ("chaos",)


@dataclass
class BenchOptions:
    deployments: int = 100
    cold_sizes: tuple[int, ...] = (50, 200)
    cold_pairs: int = 5
    profile: Path | None = None  # cold: py-spy samples of the daemon written here
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
    tiny: bool = False  # smoke sizes for the chaos scenario too
    build_trials: int = 5
    build_queue: int = 10
    rollout_updates: int = 10
    rollout_fleet: int = 20
    fullread_deployments: int = 1000
    fullread_rounds: int = 30
    swarm_deployments: int = 10
    db_failover_trials: int = 3
    db_failover_deployments: int = 20
    swarm_source_trials: int = 3
    swarm_updates: int = 5
    stop_deletions: int = 20
    client_updates: int = 10
    client_seconds: int = 120

    @classmethod
    def smoke(cls, database_url: str | None = None) -> BenchOptions:
        """Small enough to run in the test suite: proves each scenario still works."""
        return cls(
            deployments=3,
            cold_sizes=(3,),
            cold_pairs=1,
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
            tiny=True,
            build_trials=1,
            build_queue=3,
            rollout_updates=2,
            rollout_fleet=2,
            fullread_deployments=20,
            fullread_rounds=2,
            swarm_deployments=2,
            db_failover_trials=1,
            db_failover_deployments=3,
            swarm_source_trials=1,
            swarm_updates=1,
            stop_deletions=3,
            client_updates=1,
            client_seconds=20,
        )


def _build(env: Environment, options: BenchOptions) -> None:
    env.start_daemon()
    builds.run(env, options.build_trials, options.build_queue)


def run(names: list[str], options: BenchOptions) -> None:
    """Run the named scenarios in one process, printing each table as it completes."""
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
            daemon = env.start_daemon(
                BERTH_CONCURRENCY=str(options.threads), BERTH_RESYNC_INTERVAL_S=options.resync_s
            )
            port = daemon.port
            if "latency" in names:
                scenarios.print_rows("latency", scenarios.latency(env, options.trials))
            if "cold" in names:
                cold.run(
                    env,
                    daemon,
                    options.cold_sizes,
                    options.cold_pairs,
                    options.threads,
                    options.healthcheck_variant,
                    options.swarm,
                    options.profile,
                )
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
    with_own_environment: dict[str, Callable[[Environment], None]] = {
        "build": lambda env: _build(env, options),
        "rollout": lambda env: rollouts.run(env, options.rollout_updates, options.rollout_fleet),
        "api": lambda env: api.run(env, api.ApiSizes.smoke() if options.tiny else api.ApiSizes()),
        "fullread": lambda env: fullread.run(
            env, options.fullread_deployments, options.fullread_rounds
        ),
        "clients": lambda env: clients.run(env, options.client_updates, options.client_seconds),
        "stops": lambda env: stops.run(env, options.stop_deletions),
    }
    for name, scenario in with_own_environment.items():
        if name in names:  # each in a database and cluster of its own, removed after
            env = Environment(options.database_url)
            try:
                scenario(env)
            finally:
                env.close()
    if "swarm" in names:
        swarm.run(options.swarm_deployments, options.threads, options.database_url)
    if "db-failover" in names:
        dbfailover.run(options.db_failover_trials, options.db_failover_deployments)
    if "swarm-source" in names:
        swarm_source.run(options.swarm_source_trials, options.swarm_updates, options.database_url)
    if "failover" in names:
        result = failover(
            options.failover_trials,
            3,
            10 if options.failover_trials > 1 else 2,
            options.database_url,
        )
        print()
        print_failover(result, 3, 10 if options.failover_trials > 1 else 2)
    if "chaos" in names:
        print("\n== chaos: the faults of an operator's bad day")
        sizes = chaos.ChaosOptions.smoke() if options.tiny else chaos.ChaosOptions()
        for line in chaos.run(sizes):
            print(line, flush=True)
