"""The swarm delivery benchmark (`berth bench run swarm-source`): source to running on three
nodes through a registry, and a rollout across nodes under load, beside doing it by hand.

Called by `controller.bench.runner`. On the rig (`controller.gateways.swarm_rig`) with a
private registry on the rig's link (`controller.gateways.registry_server`) and a private
HAProxy, in one run, it measures:
- source -> 3 replicas running on 3 nodes: an INSERT with a git source (built on the
  manager, pushed, run pinned by digest, one replica per node) until the row says converged,
  against `git clone` + `docker build` + `docker push` + three one-task services pinned by
  digest (one per node) by hand until all run; interleaved trial by trial, each from a
  commit of its own so that the layer cache helps neither side;
- a rollout across nodes under load: a routed deployment of 3 replicas (one per node)
  updated while requests flow through the proxy, until converged, with the failed requests
  counted; against Swarm's own start-first rolling update of a 3-task service (no proxy,
  no drain: the floor of the engine's own rollout).
Prints figures and ratios; asserts nothing. Removes the rig, registry and proxy.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from pathlib import Path

from controller.bench import baselines
from controller.bench.builds import commit_app, git_in, new_repo, run_checked
from controller.bench.harness import BENCH_IMAGE, Environment, percentile, poll
from controller.bench.scenarios import Row, print_rows
from controller.bench.swarm import on_a_rig
from controller.gateways.haproxy_server import PrivateHaproxy
from controller.gateways.registry_server import PrivateRegistry
from controller.gateways.swarm_rig import SwarmRig
from controller.gateways.traffic import Traffic

REPLICAS = 3
HEALTH = {
    "test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"],
    "interval_s": 0.5,
    "timeout_s": 2,
    "retries": 3,
}


def run(trials: int, updates: int, database_url: str | None) -> None:
    with on_a_rig(database_url) as (env, rig, run_id):
        registry = PrivateRegistry(rig.registry_host)
        proxy = PrivateHaproxy()
        try:
            env.start_daemon(
                BERTH_RUNTIME="swarm",
                BERTH_REGISTRY=registry.address,
                BERTH_PROXY_ADMIN_URL=proxy.admin_url,
                BERTH_PROXY_HTTP_ADDR=proxy.http_addr,
            )
            rows, notes = _source(env, rig, registry, run_id, trials)
            print_rows("swarm: source -> 3 replicas on 3 nodes, through a registry", rows)
            print("\n".join(notes), flush=True)
            rows, notes = _rollout(env, rig, proxy, run_id, updates)
            print_rows(f"swarm: {updates} rollouts across 3 nodes under load", rows)
            print("\n".join(notes))
        finally:
            proxy.close()
            registry.close()


def _by_hand(
    url: str, repo: Path, commit: str, folder: Path, registry: str, tag: str, run_id: str
) -> float:
    """What an operator types: clone, build, push, then a service per node by digest."""
    started = time.monotonic()
    checkout = folder / f"hand-{uuid.uuid4().hex[:6]}"
    run_checked("git", "clone", "-q", f"file://{repo}", str(checkout))
    git_in(checkout, "checkout", "-q", commit)
    remote = f"{registry}/{tag}"
    run_checked("docker", "build", "-q", "-t", remote, str(checkout))
    run_checked("docker", "push", "-q", remote)
    pinned = run_checked("docker", "inspect", "--format", "{{index .RepoDigests 0}}", remote)
    nodes = baselines.swarm_node_ids(url)
    baselines.swarm_services(url, run_id, REPLICAS, REPLICAS, pinned, nodes)
    poll(lambda: len(baselines.swarm_running(url, run_id)) == REPLICAS, 300, 0.05)
    elapsed = time.monotonic() - started
    shutil.rmtree(checkout, ignore_errors=True)
    baselines.remove_swarm_services(url, run_id)
    return elapsed


def _source(
    env: Environment, rig: SwarmRig, registry: PrivateRegistry, run_id: str, trials: int
) -> tuple[list[Row], list[str]]:
    repo = new_repo(env.folder, "app")
    berth: list[float] = []
    hand: list[float] = []
    url = rig.manager().url
    for trial in range(trials):
        for side in ("berth", "hand") if trial % 2 == 0 else ("hand", "berth"):
            commit = commit_app(repo, f"{side}-{run_id}-{trial}", 0.5)
            if side == "hand":
                tag = f"bench-hand/{run_id}:{trial}"
                hand.append(_by_hand(url, repo, commit, env.folder, registry.address, tag, run_id))
                continue
            name = f"src-{trial}"
            source = {"git": {"url": f"file://{repo}", "ref": commit}}
            started = time.monotonic()
            env.sql(
                "INSERT INTO deployments (name, source, replicas, placement) "
                "VALUES (%s, %s, %s, %s)",
                [name, json.dumps(source), REPLICAS, json.dumps({"max_per_node": 1})],
            )
            poll(lambda n=name: env.converged([n]), 300, 0.05)  # type: ignore[misc]
            berth.append(time.monotonic() - started)
            env.sql("DELETE FROM deployments WHERE name = %s", [name])
    label = "git clone + build + push + 3 service creates"
    rows = [
        Row(f"median of {trials}", percentile(berth, 0.5), percentile(hand, 0.5), label),
        Row(f"slowest of {trials}", max(berth), max(hand), label),
    ]
    figures = ", ".join(f"{value:.2f}" for value in berth)
    return rows, [f"  berth: {figures}; by hand: " + ", ".join(f"{v:.2f}" for v in hand)]


def _rollout(
    env: Environment, rig: SwarmRig, proxy: PrivateHaproxy, run_id: str, updates: int
) -> tuple[list[Row], list[str]]:
    route = [{"host": "roll.bench.test", "port": 8080}]
    env.sql(
        "INSERT INTO deployments (name, image, replicas, healthcheck, routes, placement) "
        "VALUES ('roll', %s, 3, %s, %s, %s)",
        [BENCH_IMAGE, json.dumps(HEALTH), json.dumps(route), json.dumps({"max_per_node": 1})],
    )
    poll(lambda: env.converged(["roll"]), 180, 0.05)
    url = rig.manager().url
    berth: list[float] = []
    with Traffic(proxy.http_addr, "roll.bench.test", rate=250, max_seconds=900) as traffic:
        poll(lambda: traffic.report.sent > 50, 30)
        for index in range(updates):
            started = time.monotonic()
            env.sql(
                "UPDATE deployments SET env = %s WHERE name = 'roll'",
                [json.dumps({"ROUND": str(index)})],
            )
            generation = env.sql("SELECT generation FROM deployments WHERE name = 'roll'")[0]
            poll(
                lambda g=generation["generation"]: (  # type: ignore[misc]
                    env.converged(["roll"])
                    and env.sql(
                        "SELECT observed_generation FROM deployment_status WHERE name = 'roll'"
                    )[0]["observed_generation"]
                    == g
                ),
                300,
                0.05,
            )
            berth.append(time.monotonic() - started)
    service = baselines.swarm_rolling_service(url, run_id, REPLICAS)
    poll(lambda: len(baselines.swarm_running(url, run_id)) >= 1, 120, 0.1)
    swarm = [baselines.swarm_rolling_update(url, service, index + 1) for index in range(updates)]
    total = traffic.report
    rows = [
        Row(
            f"one rollout, median of {updates}",
            percentile(berth, 0.5),
            percentile(swarm, 0.5),
            "Swarm's own start-first update",
        ),
        Row(f"one rollout, slowest of {updates}", max(berth), max(swarm), "Swarm's own"),
    ]
    notes = [
        f"  requests through the proxy during Berth's rollouts: {total.sent}, failed "
        f"{total.failed}, resent {total.resent} (Swarm's own update has no proxy to drain)"
    ]
    return rows, notes
