"""The full read's cost: what the desired state of N deployments costs one full resync.

Called by `controller.bench.runner` (`berth bench run fullread`). Inserts N deployments
(no containers: this measures Postgres and parsing only), then alternates, in the same run
and on the same rows, the gateway's full read (`select_deployments`, every column, then
`DeploymentRecord` and the spec parsed as the reconciler does) against a baseline: the same
query without the columns that schemas 12 and 13 added, parsed the same
way. The ratio is what production workloads (resources, volumes, networks, secrets, ...)
cost a resync of a fleet that uses none of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from controller.bench.harness import BENCH_IMAGE, Environment, percentile
from controller.gateways.postgres_sql import queries
from controller.model.records import DeploymentRecord
from controller.model.spec import parse_spec

ADDED_COLUMNS = (
    "       berth_workload_of(d) AS workload,\n"
    "       nullif(d.secret_versions, '{}') AS secret_versions,"
    "  -- most: none, nothing to decode\n"
)


def baseline_query() -> str:
    """`select_deployments` as schema 11 had it: the added columns cut."""
    assert ADDED_COLUMNS in queries()["select_deployments"], "the query changed: update this"
    query = queries()["select_deployments"]
    return query.replace(ADDED_COLUMNS, "", 1)


def run(env: Environment, count: int, rounds: int) -> None:
    print(f"\n== full read: {count} deployments, {rounds} interleaved rounds")
    env.sql(
        "INSERT INTO deployments (name, image, replicas, env, ports) "
        'SELECT \'read-\' || i, %s, 2, \'{"MODE": "live", "LEVEL": "info"}\', '
        "'[{\"container\": 8080}]' FROM generate_series(1, %s) i",
        [BENCH_IMAGE, count],
    )
    current, baseline = queries()["select_deployments"], baseline_query()
    timings: dict[str, list[float]] = {"berth": [], "baseline": []}

    def read(query: str) -> Callable[[], None]:
        def once() -> None:
            rows = env.database.schema.execute_sql(query)
            for row in rows:
                record = DeploymentRecord.from_row({**row, "present": True})
                assert record.spec is not None
                parse_spec(record.spec)

        return once

    for _ in range(2):  # warm both: plans cached, pages in memory
        read(current)()
        read(baseline)()
    for _ in range(rounds):
        for name, query in (("berth", current), ("baseline", baseline)):
            started = time.perf_counter()
            read(query)()
            timings[name].append(time.perf_counter() - started)
    berth_p50, base_p50 = percentile(timings["berth"], 0.5), percentile(timings["baseline"], 0.5)
    berth_p90, base_p90 = percentile(timings["berth"], 0.9), percentile(timings["baseline"], 0.9)
    print(f"{'':<34}{'berth':>10}{'schema 11':>12}{'ratio':>8}")
    print(
        f"{'full read + parse, p50 (ms)':<34}{berth_p50 * 1000:>10.1f}"
        f"{base_p50 * 1000:>12.1f}{berth_p50 / base_p50:>8.2f}"
    )
    print(
        f"{'full read + parse, p90 (ms)':<34}{berth_p90 * 1000:>10.1f}"
        f"{base_p90 * 1000:>12.1f}{berth_p90 / base_p90:>8.2f}"
    )
    env.sql("DELETE FROM deployments WHERE name LIKE 'read-%'")
