"""Nodes on the three-node rig (`BERTH_RUNTIME=swarm`): what cannot run says why, naming
the field or the node, while the rest converges; drains move replicas start-first and a
drained last node says why its replicas stay; a node's loss is survived (replicas running
again elsewhere, deployments active, no duplicate, no orphan, the lost node named in the
events, no restart charged to the app), measured beside Swarm's own rescheduling."""

from __future__ import annotations

import time
from typing import Any

import pytest

from controller.app.daemon import Daemon
from controller.gateways.swarm_rig import RigNode, SwarmRig
from controller.model.names import LABEL_CLUSTER
from tests.integration.conftest import Sql, berth, report, wait_for

pytestmark = pytest.mark.integration


def node_ids(rig: SwarmRig) -> dict[str, str]:
    """Each rig node's Swarm id, by address."""
    client = rig.manager().client()
    try:
        return {n["Status"]["Addr"]: n["ID"] for n in client.nodes()}
    finally:
        client.close()


def message(sql: Sql, name: str) -> str:
    row = sql.status(name)
    return str(row["message"]) if row else ""


def test_what_cannot_run_says_why_naming_the_field_or_the_node(
    swarm_daemon: Daemon, sql: Sql, rig: SwarmRig, database_url: str
) -> None:
    ids = node_ids(rig)
    second, third = rig.nodes[1], rig.nodes[2]
    rig.load_on(third, "berth-example/busybox:1", "berth-test/third-only:1")
    sql.insert("steady", replicas=3)
    sql.insert("nowhere", placement={"constraints": ["node.labels.zone==mars"]})
    sql.insert(
        "partial",
        image="berth-test/third-only:1",
        placement={"constraints": [f"node.id=={ids[second.address]}"]},
    )
    wait_for(lambda: sql.converged("steady"), timeout_s=90, what="the others converge")
    said = wait_for(
        lambda: "no suitable node" in (m := message(sql, "nowhere")) and m,
        timeout_s=60,
        what="the placement nobody meets, said",
    )
    assert "placement [node.labels.zone==mars]" in said, said
    lacking = wait_for(
        lambda: "No such image" in (m := message(sql, "partial")) and m,
        timeout_s=60,
        what="the image a node lacks, said",
    )
    assert f"@{second.address}" in lacking and "berth-test/third-only:1" in lacking, lacking
    assert sql.converged("steady"), "one broken deployment never stops the others"
    refused = berth(
        database_url,
        "apply",
        "-f",
        "-",
        stdin='{"name": "bad", "image": "x", "placement": {"constraints": ["zone=a"]}}',
    )
    assert refused.returncode == 4 and "placement" in refused.stderr, refused.stderr


def availability(sql: Sql, cluster: str) -> dict[str, tuple[str, str]]:
    rows = sql("SELECT address, availability, note FROM nodes WHERE cluster = %s", [cluster])
    return {r["address"]: (r["availability"], r["note"]) for r in rows}


def test_a_drain_moves_replicas_start_first_and_a_drained_last_node_says_why(
    swarm_daemon: Daemon, sql: Sql, rig: SwarmRig, cluster: str, database_url: str
) -> None:
    first, second, third = rig.nodes
    sql.insert("mover", replicas=3)
    wait_for(lambda: sql.converged("mover"), timeout_s=90, what="converged")
    wait_for(lambda: len(availability(sql, cluster)) == 3, timeout_s=30, what="nodes recorded")
    phases: set[str] = set()
    for node in (second, third):
        drained = berth(database_url, "node", "drain", node.address, cluster=cluster)
        assert drained.returncode == 0, drained.stderr

    def moved_off() -> bool:
        phases.add(str((sql.status("mover") or {}).get("phase")))
        rows = sql("SELECT node, state FROM replicas WHERE deployment = 'mover'")
        where = availability(sql, cluster)
        return (
            len(rows) == 3
            and all(r["node"].endswith("@" + first.address) for r in rows)
            and all(where[n.address][0] == "drain" for n in (second, third))
        )

    wait_for(moved_off, timeout_s=120, interval_s=0.2, what="replicas moved to the first node")
    assert phases == {"active"}, f"start-first: never fewer ready replicas ({phases})"
    events = sql("SELECT message FROM deployment_events WHERE deployment = 'mover'")
    assert any("moved from" in e["message"] for e in events)

    shared = berth(database_url, "node", "drain", "node-1", cluster=cluster)
    assert shared.returncode == 3, "a hostname every engine shares matches none"
    assert berth(database_url, "node", "drain", first.address, cluster=cluster).returncode == 0
    note = wait_for(
        lambda: "no suitable node" in (n := availability(sql, cluster)[first.address][1]) and n,
        timeout_s=90,
        what="the drained last node's note",
    )
    assert "cannot move yet" in note, note
    assert sql.converged("mover"), "its replicas keep running where they are"
    listed = berth(database_url, "nodes", cluster=cluster)
    assert "cannot move yet" in listed.stdout
    for node in rig.nodes:
        assert (
            berth(database_url, "node", "activate", node.address, cluster=cluster).returncode == 0
        )
    wait_for(
        lambda: all(a == "active" for a, _ in availability(sql, cluster).values()),
        timeout_s=60,
        what="every node active again",
    )


def running_tasks(rig: SwarmRig, cluster: str, lost: RigNode) -> dict[str, Any]:
    """Swarm's own view: the services of this cluster with a task running on a node other
    than `lost` (asked of the first node's engine)."""
    client = rig.manager().client()
    try:
        nodes = {n["ID"]: n["Status"]["Addr"] for n in client.nodes()}
        services = client.services(filters={"label": [f"{LABEL_CLUSTER}={cluster}"]})
        tasks = client.tasks(filters={"desired-state": "running"})
    finally:
        client.close()
    mine = {s["ID"] for s in services}
    return {
        t["ServiceID"]: nodes.get(t.get("NodeID"))
        for t in tasks
        if t["ServiceID"] in mine
        and t["Status"]["State"] == "running"
        and nodes.get(t.get("NodeID")) != lost.address
    } | {"services": len(mine)}


def test_a_lost_node_is_survived_and_named(
    swarm_daemon: Daemon,
    sql: Sql,
    rig: SwarmRig,
    cluster: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = [f"app-{index}" for index in range(3)]
    for name in names:
        sql.insert(name, replicas=3)
    wait_for(lambda: all(sql.converged(n) for n in names), timeout_s=120, what="converged")
    lost = rig.nodes[2]
    on_lost = [r for r in sql("SELECT * FROM replicas") if r["node"].endswith("@" + lost.address)]
    assert on_lost, "the spread put replicas on the node about to be lost"

    cut_at = time.monotonic()
    rig.cut(lost)
    try:
        swarm_done = wait_for(
            lambda: (
                len(found := running_tasks(rig, cluster, lost)) - 1 == found["services"] == 9
                and time.monotonic()
            ),
            timeout_s=120,
            interval_s=0.2,
            what="Swarm runs every task on the other nodes",
        )
        berth_done = wait_for(
            lambda: (
                all(sql.converged(n) for n in names)
                and not [
                    r for r in sql("SELECT * FROM replicas") if r["node"].endswith(lost.address)
                ]
                and time.monotonic()
            ),
            timeout_s=120,
            interval_s=0.2,
            what="Berth shows every deployment active off the lost node",
        )
        report(
            capsys,
            f"node lost: Swarm ran every task again after {swarm_done - cut_at:.1f}s; Berth "
            f"showed all {len(names)} deployments active off it after {berth_done - cut_at:.1f}s",
        )
        rows = sql("SELECT * FROM replicas")
        assert len(rows) == 9 and all(r["state"] == "running" for r in rows), "no duplicate"
        assert all(r["restarts"] == 0 for r in rows), "a node's death is no restart of the app"
        statuses = sql("SELECT name, restart_count FROM deployment_status")
        assert all(s["restart_count"] == 0 for s in statuses)
        events = " | ".join(
            f"{e['kind']} {e['message']}"
            for e in sql("SELECT kind, message FROM deployment_events ORDER BY id")
        )
        assert f"@{lost.address} (node lost) to" in events, events
        degraded = sql("SELECT message FROM deployment_events WHERE phase_to = 'degraded'")
        assert degraded, "degraded while a replica ran again off the lost node"
    finally:
        rig.reconnect(lost)
    wait_for(lambda: rig.ready_nodes() == 3, timeout_s=90, what="the node back")
    wait_for(
        lambda: rig.running_labelled(lost, f"{LABEL_CLUSTER}={cluster}") == 0,
        timeout_s=90,
        what="the rejoined node's stale tasks stopped: no orphan",
    )
    # A rejoining manager can cost the swarm its raft leader for a few seconds ("The swarm
    # does not have a leader"): passes fail transiently meanwhile, and converge after.
    wait_for(
        lambda: all(sql.converged(n) for n in names), timeout_s=90, what="active after the rejoin"
    )
    assert len(sql("SELECT * FROM replicas WHERE state = 'running'")) == 9, "no duplicate"
