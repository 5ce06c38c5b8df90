"""The swarm benchmark (`berth bench run swarm`): Berth on a three-node swarm beside the same
services made by hand with docker-py, in one run on one rig.

Called by `controller.bench.runner`. On the rig (`controller.gateways.swarm_rig`: three
dockerds in network namespaces of their own, one swarm), it measures:
- cold converge: N deployments x 3 replicas inserted at once -> every deployment active,
  against N x 3 one-task services created by hand (Berth's shape) -> every task running;
- spread: Berth's tasks per node after the cold converge, and the hand-made ones';
- a node lost (its link cut): -> every Berth deployment active again off it, against the
  hand-made services all running again off it (Swarm alone), from the same cut.
Prints figures and ratios; asserts nothing. Removes the rig and everything on it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from controller.bench import baselines
from controller.bench.harness import BENCH_IMAGE, Environment, poll
from controller.bench.scenarios import Row, print_rows
from controller.gateways.swarm_rig import RigNode, SwarmRig
from controller.gateways.swarm_runtime import SwarmRuntime
from controller.model.replicas import RunState

REPLICAS = 3


def _spread(addresses: list[str], rig: SwarmRig) -> str:
    counts = Counter(addresses)
    return " / ".join(str(counts.get(node.address, 0)) for node in rig.nodes)


@contextmanager
def on_a_rig(database_url: str | None) -> Iterator[tuple[Environment, SwarmRig, str]]:
    """A three-node rig with DOCKER_HOST at its manager, an environment whose runtime is the
    swarm's, and a run id for the baseline's services; all removed afterwards (the caller
    starts the daemon, with the settings its scenario needs)."""
    rig = SwarmRig(3, (BENCH_IMAGE,))
    saved = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = rig.manager().url
    run_id = uuid.uuid4().hex[:6]
    env: Environment | None = None
    try:
        env = Environment(database_url)
        env.runtime = SwarmRuntime(env.docker)  # type: ignore[assignment]
        yield env, rig, run_id
    finally:
        try:
            baselines.remove_swarm_services(rig.manager().url, run_id)
        finally:
            if env is not None:
                env.close()
            if saved is None:
                os.environ.pop("DOCKER_HOST", None)
            else:
                os.environ["DOCKER_HOST"] = saved
            rig.close()


def run(deployments: int, threads: int, database_url: str | None) -> None:
    with on_a_rig(database_url) as (env, rig, run_id):
        env.start_daemon(BERTH_RUNTIME="swarm", BERTH_CONCURRENCY=str(threads))
        rows, notes = _measure(env, rig, run_id, deployments, threads)
        print_rows(f"swarm: {deployments} deployments x {REPLICAS} replicas on 3 nodes", rows)
        for note in notes:
            print(note)


def _measure(
    env: Environment,
    rig: SwarmRig,
    run_id: str,
    deployments: int,
    threads: int,
) -> tuple[list[Row], list[str]]:
    total = deployments * REPLICAS
    url = rig.manager().url
    started = time.monotonic()
    baselines.swarm_services(url, run_id, total, threads)
    poll(lambda: len(baselines.swarm_running(url, run_id)) == total, 600, 0.1)
    by_hand = time.monotonic() - started

    names = [f"sw{run_id}-{index}" for index in range(deployments)]
    started = time.monotonic()
    env.sql(
        "INSERT INTO deployments (name, image, replicas) SELECT unnest(%s::text[]), %s, %s",
        [names, BENCH_IMAGE, REPLICAS],
    )
    poll(lambda: env.converged(names), 600, 0.1)
    cold = time.monotonic() - started
    berth_nodes = [
        r.node.rpartition("@")[2] for r in env.containers() if r.state == RunState.RUNNING
    ]
    hand_nodes = list(baselines.swarm_running(url, run_id).values())
    notes = [
        f"tasks per node (node-1 / node-2 / node-3): Berth {_spread(berth_nodes, rig)}, "
        f"by hand {_spread(hand_nodes, rig)}"
    ]

    lost = rig.nodes[2]
    swarm_alone, berth_back = _node_loss(env, rig, run_id, names, lost, total)
    notes.append(
        f"node lost: {lost.address} cut; Swarm marks a node down after its heartbeats stop "
        "(about 15 s here), then runs its tasks elsewhere"
    )
    rows = [
        Row(f"cold converge ({total} replicas)", cold, by_hand, "docker-py, a service per task"),
        Row("node lost -> all running elsewhere", berth_back, swarm_alone, "Swarm alone"),
    ]
    return rows, notes


def _node_loss(
    env: Environment,
    rig: SwarmRig,
    run_id: str,
    names: list[str],
    lost: RigNode,
    total: int,
) -> tuple[float, float]:
    """Cut `lost`; seconds until the hand-made services and until Berth's deployments all
    run off it (Berth's: active, as its status says)."""

    def berth_off() -> bool:
        placed: list[Any] = env.sql(
            "SELECT node FROM replicas WHERE deployment = ANY(%s) AND state = 'running'", [names]
        )
        return (
            env.converged(names)
            and len(placed) == total
            and not any(str(r["node"]).endswith("@" + lost.address) for r in placed)
        )

    cut_at = time.monotonic()
    rig.cut(lost)
    swarm_at: float | None = None
    berth_at: float | None = None
    try:
        deadline = cut_at + 300
        while (swarm_at is None or berth_at is None) and time.monotonic() < deadline:
            off = baselines.swarm_running(rig.manager().url, run_id, lost.address)
            if swarm_at is None and len(off) == total:
                swarm_at = time.monotonic()
            if berth_at is None and berth_off():
                berth_at = time.monotonic()
            time.sleep(0.1)
    finally:
        rig.reconnect(lost)
    if swarm_at is None or berth_at is None:
        raise TimeoutError("the node's replicas did not all run again within 300 s")
    poll(lambda: rig.ready_nodes() == 3, 120, 0.5)
    return swarm_at - cut_at, berth_at - cut_at
