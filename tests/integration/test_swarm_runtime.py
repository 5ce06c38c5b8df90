"""The swarm runtime (`BERTH_RUNTIME=swarm`) on the three-node rig: ten deployments of three
replicas converge with tasks on all three nodes, answering at each node's address; the
`replicas` and `nodes` views and `berth nodes` show where they run; an update rolls out
start-first at the revision level (new services up before the old ones go); a revision that
never gets ready is rolled back with Swarm's own reason; a delete leaves no service. The rig
is made once for the module (`rig` in conftest)."""

from __future__ import annotations

import urllib.request

import pytest

from controller.app.daemon import Daemon
from controller.gateways.swarm_rig import SwarmRig
from controller.model.replicas import RunState
from tests.integration.conftest import (
    EXAMPLE_IMAGE_2,
    Sql,
    berth,
    wait_for,
)

pytestmark = pytest.mark.integration
DEPLOYMENTS = 10


def test_deployments_spread_over_the_nodes_roll_out_and_go(
    swarm_daemon: Daemon, sql: Sql, rig: SwarmRig, cluster: str, database_url: str
) -> None:
    names = [f"web-{index}" for index in range(DEPLOYMENTS)]
    for name in names:
        sql.insert(name, replicas=3, ports=[{"container": 8080}])
    wait_for(lambda: all(sql.converged(n) for n in names), timeout_s=240, what="converged")
    replicas = [r for r in swarm_daemon.runtime.observe() if r.cluster == cluster]
    assert len(replicas) == 3 * DEPLOYMENTS and all(r.state == RunState.RUNNING for r in replicas)
    nodes = {r.node.rpartition("@")[2] for r in replicas}
    assert nodes == {n.address for n in rig.nodes}, "tasks on all three nodes"
    addresses = {node.address for node in rig.nodes}
    for replica in replicas[:9]:  # nine requests, each to a node this test made
        host, port = replica.address(8080) or ("", 0)
        assert host in addresses
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=5) as answer:
            assert b"hello from berth" in answer.read()

    # The views tell the same: each replica's node and address, each node's replica count.
    seen = wait_for(
        lambda: (
            (rows := sql("SELECT * FROM replicas WHERE state = 'running'"))
            and len(rows) == 3 * DEPLOYMENTS
            and rows
        ),
        timeout_s=30,
        what="the replicas view",
    )
    by_id = {r.id[:12]: r for r in replicas}
    for row in seen:
        observed = by_id[row["replica_id"]]
        assert (row["node"], row["slot"]) == (observed.node, observed.replica)
        assert row["address"].partition(":")[0] == observed.node.rpartition("@")[2]
    counted = wait_for(
        lambda: (
            (rows := sql("SELECT * FROM nodes WHERE cluster = %s", [cluster]))
            and sum(r["replicas"] for r in rows) == 3 * DEPLOYMENTS
            and rows
        ),
        timeout_s=30,
        what="the nodes view counting every replica",
    )
    assert {r["address"] for r in counted} == addresses
    assert all((r["state"], r["availability"]) == ("ready", "active") for r in counted)
    listed = berth(database_url, "nodes", cluster=cluster)
    assert listed.returncode == 0, listed.stderr
    assert all(n.address in listed.stdout for n in rig.nodes) and "ready" in listed.stdout
    wide = berth(database_url, "get", "web-0", "-o", "wide", cluster=cluster)
    assert wide.returncode == 0 and "NODES" in wide.stdout and "0@" in wide.stdout

    before = {r.id for r in replicas if r.deployment == "web-0"}
    sql("UPDATE deployments SET image = %s WHERE name = 'web-0'", [EXAMPLE_IMAGE_2])
    wait_for(
        lambda: (found := sql.converged("web-0")) and found["observed_generation"] == 2,
        timeout_s=120,
        what="the update rolled out",
    )
    after = [r for r in swarm_daemon.runtime.observe("web-0") if r.cluster == cluster]
    assert len(after) == 3 and not before & {r.id for r in after}
    actions = sql(
        "SELECT action FROM deployment_events WHERE deployment = 'web-0' AND generation = 2 "
        "AND kind = 'action' ORDER BY id"
    )
    kinds = [row["action"] for row in actions]
    assert kinds.index("create") < kinds.index("remove"), "start-first: created before removed"

    # A revision whose image no node has never gets ready: rolled back, with Swarm's words.
    # (A deadline long enough for Swarm to have tried a node: under the full suite's load its
    # scheduler took more than 8 s, and the words were only "pending task scheduling".)
    sql(
        "UPDATE deployments SET image = 'berth-test/nowhere:1', "
        "rollout = '{\"progress_deadline_s\": 20}' WHERE name = 'web-1'"
    )
    rolled = wait_for(
        lambda: (row := sql.status("web-1")) and row["phase"] == "rolled_back" and row,
        timeout_s=90,
        what="web-1 rolled back",
    )
    assert "rolled back" in rolled["message"]
    said = sql(
        "SELECT message FROM deployment_events WHERE deployment = 'web-1' "
        "AND phase_to = 'rolled_back' ORDER BY id LIMIT 1"
    )[0]["message"]
    assert "progress deadline" in said and "No such image: berth-test/nowhere:1" in said, said
    assert "@" in said.partition("progress deadline")[2], f"names the nodes: {said}"

    # The rolled-back revision's replicas leave in the background (RECONCILIATION.md, "Stops
    # off the pass"): the old revision alone serves once they are gone.
    def old_revision_alone() -> bool:
        serving = [r for r in swarm_daemon.runtime.observe("web-1") if r.cluster == cluster]
        return len(serving) == 3 and all(r.ready for r in serving)

    wait_for(old_revision_alone, timeout_s=60, what="the old revision serves, alone")

    for name in names:
        sql("DELETE FROM deployments WHERE name = %s", [name])
    wait_for(
        lambda: not [r for r in swarm_daemon.runtime.observe() if r.cluster == cluster],
        timeout_s=120,
        what="every service gone",
    )
