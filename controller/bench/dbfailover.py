"""The database failover benchmark (`berth bench run db-failover`): Berth through its Postgres
primary's loss and a standby's promotion, beside the same Postgres restarted in place.

Called by `controller.bench.runner`. Each trial is a pair of runs, interleaved, each on a
fresh primary with a streaming standby (`controller.gateways.postgres_pair`) and one
`berth run` on a URL naming both servers (`target_session_attrs=read-write`), with N
deployments converged:
- failover: the primary stopped (immediate), the standby promoted;
- restart: the primary stopped (immediate) and started again, the standby untouched.
From the stop, it measures when the database takes writes again, when the leader's first
Docker mutation after it is recorded (two deployments are changed as soon as the database
takes writes), and when every deployment is converged again. Prints figures and ratios;
asserts nothing. Removes the servers, daemons and containers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from controller.bench.harness import BENCH_IMAGE, Environment, percentile, poll
from controller.bench.scenarios import Row, print_rows
from controller.gateways.postgres_pair import PostgresPair


def run(trials: int, deployments: int) -> None:
    measured: dict[str, list[tuple[float, float, float]]] = {"failover": [], "restart": []}
    for trial in range(trials):
        for side in ("failover", "restart") if trial % 2 == 0 else ("restart", "failover"):
            measured[side].append(_one(side, deployments, trial))
    rows = []
    labels = ("the database takes writes", "the leader's first mutation", "all converged")
    for index, label in enumerate(labels):
        rows.append(
            Row(
                f"primary lost -> {label}, median of {trials}",
                percentile([m[index] for m in measured["failover"]], 0.5),
                percentile([m[index] for m in measured["restart"]], 0.5),
                "the same Postgres restarted in place",
            )
        )
    print_rows(f"db-failover: {deployments} deployments, a standby promoted", rows)


def _one(side: str, deployments: int, trial: int) -> tuple[float, float, float]:
    pair = PostgresPair()
    env: Environment | None = None
    try:
        env = Environment(pair.url("primary", "standby"))
        env.start_daemon()
        names = [f"dbf-{index}" for index in range(deployments)]
        env.sql(
            "INSERT INTO deployments (name, image) SELECT unnest(%s::text[]), %s",
            [names, BENCH_IMAGE],
        )
        poll(lambda: env is not None and env.converged(names), 180, 0.05)
        term = int(
            env.sql("SELECT term FROM berth_leader WHERE cluster = %s", [env.cluster])[0]["term"]
        )
        stopped = time.monotonic()
        pair.stop("primary")
        if side == "failover":
            pair.promote("standby")
        else:
            pair.start("primary")
        writable = _until(lambda: _writable(env, names[:2], trial), stopped)
        first = _until(lambda: _first_mutation(env, term), stopped)
        converged = _until(lambda: env is not None and env.converged(names), stopped)
        return writable, first, converged
    finally:
        if env is not None:
            env.close()
        pair.close()


def _until(predicate: Callable[[], Any], since: float) -> float:
    poll(predicate, 180, 0.02)
    return time.monotonic() - since


def _writable(env: Environment, changed: list[str], trial: int) -> bool:
    try:
        env.sql(
            "UPDATE deployments SET env = %s WHERE name = ANY(%s)",
            [f'{{"TRIAL": "{trial}"}}', changed],
        )
        return True
    except Exception:
        env.reconnect()
        return False


def _first_mutation(env: Environment, term: int) -> bool:
    rows = env.sql(
        "SELECT 1 FROM berth_mutations WHERE cluster = %s AND term > %s AND called_at IS NOT NULL",
        [env.cluster, term],
    )
    return bool(rows)
