"""Stops off the pass (controller.loop.stops) on the fakes: a rollout goes on while old
replicas wait out their grace, a replica being stopped is neither ready nor serving nor
retired twice, and a deleted deployment's row goes only once its containers are gone."""

from __future__ import annotations

from controller.model.phases import Phase
from controller.model.replicas import RunState
from tests.fakes import Cluster

IMAGE, IMAGE_2 = "berth-example/busybox:1", "berth-example/busybox:2"


def test_a_rollout_finishes_while_the_old_replicas_are_still_stopping() -> None:
    cluster = Cluster(background_stops=True)
    cluster.runtime.images.add(IMAGE_2)
    cluster.store.apply("web", image=IMAGE, replicas=3)
    cluster.drive("web")
    old = {c.id for c in cluster.runtime.of("web")}
    cluster.store.apply("web", image=IMAGE_2, replicas=3)
    cluster.drive("web")
    status = cluster.store.status("web")
    assert status.phase == Phase.ACTIVE and status.ready_replicas == 3, status.message
    assert len(cluster.pending_stops) == 3, "each old replica handed over, none waited for"
    assert old <= {c.id for c in cluster.runtime.of("web")}, "still there, stopping"
    assert cluster.stops is not None and cluster.stops.stopping("web") == old
    marked = cluster.stops.mark(cluster.runtime.observe("web"))
    assert {r.id for r in marked if r.state == RunState.REMOVING} == old
    assert not any(r.ready for r in marked if r.id in old), "neither ready nor serving"

    cluster.drive()  # a resync while they stop: nothing retired twice
    assert len(cluster.pending_stops) == 3
    assert cluster.finish_stops() == 3
    cluster.drive()
    assert not old & {c.id for c in cluster.runtime.of("web")}
    assert cluster.stops.stopping() == set()
    status = cluster.store.status("web")
    # the pass that wrote the new replica list began on `active`: still complete (it said
    # "active 0%" once, and the dashboard's bar went back to nothing)
    assert (status.phase, status.phase_progress) == (Phase.ACTIVE, 100)


def test_a_deleted_deployment_stays_deleting_until_its_containers_are_gone() -> None:
    cluster = Cluster(background_stops=True)
    cluster.store.apply("web", image=IMAGE, replicas=2)
    cluster.drive("web")
    cluster.store.delete("web")
    cluster.drive("web", until_s=1)
    assert cluster.store.status("web").phase == Phase.DELETING
    assert len(cluster.pending_stops) == 2
    cluster.finish_stops()  # the last one's end queues the deployment
    cluster.drive(until_s=1)
    assert "web" not in cluster.store.statuses, "the row goes once the containers are gone"
    assert cluster.runtime.of("web") == []
    said = [e.message for _, e in cluster.store.events if e.deployment == "web"]
    assert said[-1].startswith("deleted"), said
