"""Start-first rollouts through the real loop on the fakes: a new revision that never
becomes ready, or crash-loops, is rolled back; the old revision never stops serving."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.loop import faults
from controller.model.phases import Phase
from tests.fakes import Behaviour, Cluster, SimulatedCrash, crash_at

HEALTHCHECK = {"test": ["CMD-SHELL", "true"], "interval_s": 1.0}
V1, V2 = "berth-example/busybox:1", "berth-example/busybox:2"


@pytest.fixture(autouse=True)
def _disarm() -> Iterator[None]:
    yield
    faults.arm(None)


def serving(cluster: Cluster, image: str) -> int:
    return sum(
        1 for c in cluster.runtime.of("web") if c.request.image == image and c.state == "running"
    )


def active_v1(cluster: Cluster) -> None:
    cluster.runtime.images.add(V2)
    cluster.store.apply("web", image=V1, replicas=2, healthcheck=HEALTHCHECK,
                        rollout={"progress_deadline_s": 30})  # fmt: skip
    cluster.drive("web")
    assert cluster.store.status("web").phase == Phase.ACTIVE
    assert cluster.store.serving["web"] == 1


def test_a_release_that_never_gets_ready_is_rolled_back_at_its_deadline() -> None:
    cluster = Cluster()
    active_v1(cluster)
    cluster.runtime.behaviours[f"web@{V2}"] = Behaviour(healthy_after_s=None)
    cluster.store.apply("web", image=V2, replicas=2, healthcheck=HEALTHCHECK,
                        rollout={"progress_deadline_s": 30})  # fmt: skip
    cluster.drive("web", until_s=20)
    assert serving(cluster, V1) == 2, "the old revision keeps serving while the new one starts"
    assert cluster.store.status("web").phase == Phase.HEALTH_CHECK
    cluster.drive("web", until_s=60)
    status = cluster.store.status("web")
    assert status.phase == Phase.ROLLED_BACK, status.message
    assert "rolled back; revision 1 serves" in status.message
    assert serving(cluster, V1) == 2 and serving(cluster, V2) == 0
    assert [r["outcome"] for r in cluster.store.revisions["web"]] == ["serving", "rolled_back"]
    assert "progress deadline (30s)" in cluster.store.revisions["web"][1]["reason"]
    assert Phase.ACTIVE not in cluster.store.phase_events("web")[-4:]

    cluster.store.apply("web", image=V1, replicas=3, healthcheck=HEALTHCHECK,
                        rollout={"progress_deadline_s": 30})  # fmt: skip
    cluster.drive("web")
    assert cluster.store.status("web").phase == Phase.ACTIVE, "a row change rolls out again"


def test_a_crash_looping_release_is_rolled_back_at_once() -> None:
    cluster = Cluster()
    active_v1(cluster)
    cluster.runtime.behaviours[f"web@{V2}"] = Behaviour(exit_code=2)
    cluster.store.apply("web", image=V2, replicas=2, healthcheck=HEALTHCHECK)
    cluster.drive("web", until_s=25)
    status = cluster.store.status("web")
    assert status.phase == Phase.ROLLED_BACK, status.message
    assert "crash-loop" in cluster.store.revisions["web"][1]["reason"]
    assert serving(cluster, V1) == 2 and serving(cluster, V2) == 0


ROLLOUT_CRASH_POINTS = [
    "before:queued",
    "before:pulling_image",
    "before:creating",
    "after:create",
    "after:create#2",
    "before:starting",
    "after:start",
    "after:start#2",
    "before:health_check",
    "after:remove",
    "after:remove#2",
    "before:active",
]  # (updating_routes needs a proxy: the route tests with a real Caddy cover it)


@pytest.mark.parametrize("point", ROLLOUT_CRASH_POINTS)
def test_a_crash_at_every_step_of_a_rollout_leaves_one_container_per_slot(point: str) -> None:
    """Old and new run side by side during a start-first rollout: after a crash at any
    step the next leader still ends with exactly one current container per slot, and no
    container of either revision left behind."""
    cluster = Cluster()
    active_v1(cluster)
    cluster.store.apply("web", image=V2, replicas=2, healthcheck=HEALTHCHECK,
                        rollout={"progress_deadline_s": 30})  # fmt: skip
    crash_at(point)
    with pytest.raises(SimulatedCrash):  # the crash point is on the rollout's path
        cluster.drive("web")
    successor = cluster.successor()
    successor.drive()
    status = successor.store.status("web")
    assert status.phase == Phase.ACTIVE, status.message
    containers = successor.runtime.of("web")
    assert sorted(int(c.request.labels["io.berth.replica"]) for c in containers) == [0, 1]
    assert {c.request.image for c in containers} == {V2}
    assert successor.store.serving["web"] == 2
