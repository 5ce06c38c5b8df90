"""The stops benchmark (`berth bench run stops`): replicas whose process ignores SIGTERM
against the same app handling it, side by side in one run.

Called by `controller.bench.runner`. Measures, with a stop grace of 10 s:
- an update of 3 replicas (start-first) of an app that ignores SIGTERM (PID 1 without a
  handler: it waits out the whole grace) against the same update of one that exits on it;
- a delete of N deployments of the ignoring app until every container is gone, against one
  stop grace (what it costs when every stop runs side by side).
Prints figures and ratios; asserts nothing.
"""

from __future__ import annotations

import time

from controller.bench.harness import BENCH_IMAGE, Environment, poll
from controller.bench.scenarios import BENCH_IMAGE_2, Row, print_rows

GRACE_S = 10
IGNORES = ["sleep", "3600"]  # PID 1 with no handler: SIGTERM does nothing
HANDLES = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]


def _insert(env: Environment, names: list[str], command: list[str], replicas: int) -> None:
    env.sql(
        "INSERT INTO deployments (name, image, replicas, command, stop_grace_s) "
        "SELECT unnest(%s::text[]), %s, %s, %s, %s",
        [names, BENCH_IMAGE, replicas, command, GRACE_S],
    )
    poll(lambda: env.converged(names), timeout_s=300, interval_s=0.1)


def _update(env: Environment, name: str) -> float:
    started = time.monotonic()
    env.sql("UPDATE deployments SET image = %s WHERE name = %s", [BENCH_IMAGE_2, name])
    poll(
        lambda: env.sql(
            "SELECT 1 FROM deployment_overview WHERE name = %s AND converged "
            "AND observed_generation = 2 AND ready_replicas = 3",
            [name],
        ),
        timeout_s=300,
        interval_s=0.05,
    )
    return time.monotonic() - started


def run(env: Environment, deletions: int) -> None:
    env.start_daemon(BERTH_STOP_TIMEOUT_S=str(GRACE_S))
    _insert(env, ["handles"], HANDLES, 3)
    _insert(env, ["ignores"], IGNORES, 3)
    handled = _update(env, "handles")
    ignored = _update(env, "ignores")
    env.clear()
    names = [f"stubborn-{index:02d}" for index in range(deletions)]
    _insert(env, names, IGNORES, 1)
    started = time.monotonic()
    env.sql("DELETE FROM deployments WHERE name = ANY(%s)", [names])
    poll(lambda: not env.containers(), timeout_s=600, interval_s=0.1)
    deleted = time.monotonic() - started
    print_rows(
        f"stops: replicas ignoring SIGTERM, stop grace {GRACE_S} s",
        [
            Row(
                "update of 3 replicas ignoring SIGTERM", ignored, handled, "the same, exiting on it"
            ),
            Row(f"delete of {deletions} such deployments", deleted, GRACE_S, "one stop grace"),
        ],
    )
