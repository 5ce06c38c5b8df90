"""The loop on the fakes when a node is lost under a replica (as the swarm runtime reports
it): the deployment is degraded, not failed, with the node named; the replicas view and the
events follow it to its new node; then active, with no restart charged."""

from __future__ import annotations

from datetime import timedelta

from controller.model.phases import Phase
from controller.model.replicas import RunState
from tests.fakes import Cluster


def test_a_lost_node_degrades_names_the_node_and_recovers_without_a_restart() -> None:
    cluster = Cluster()
    cluster.store.apply("web", image="berth-example/busybox:1", replicas=2)
    cluster.drive("web")
    for container in cluster.runtime.containers.values():  # placed by a runtime with nodes
        container.node = "node-1@10.0.0.1"
    cluster.drive()
    status = cluster.store.status("web")
    assert status.phase == Phase.ACTIVE
    assert {row["node"] for row in status.replicas} == {"node-1@10.0.0.1"}

    lost = min(cluster.runtime.containers.values(), key=lambda c: c.id)
    lost.node, lost.state = "node-1@10.0.0.1 (lost)", RunState.RESTARTING
    cluster.drive()  # the full resync sees the replica elsewhere than its last pass recorded
    status = cluster.store.status("web")
    assert status.phase == Phase.DEGRADED, status.message
    assert "on node-1@10.0.0.1 (lost)" in status.message

    # well past the health deadline: a lost node is no fault of the app
    cluster.clock.advance(timedelta(seconds=600).total_seconds())
    cluster.drive("web", until_s=5)
    assert cluster.store.status("web").phase == Phase.DEGRADED

    lost.node, lost.moved_from, lost.state = "node-2@10.0.0.2", "node-1@10.0.0.1", RunState.RUNNING
    cluster.drive()
    status = cluster.store.status("web")
    assert status.phase == Phase.ACTIVE and status.restart_count == 0
    assert sorted(row["node"] for row in status.replicas) == [
        "node-1@10.0.0.1",
        "node-2@10.0.0.2",
    ]
    said = [e.message for _, e in cluster.store.events if e.deployment == "web"]
    assert any(m.endswith("node node-1@10.0.0.1 lost") for m in said), said
    assert any("moved from node-1@10.0.0.1 (node lost) to node-2@10.0.0.2" in m for m in said)
    assert len(cluster.runtime.of("web")) == 2, "no duplicate: Berth left the move to the runtime"
