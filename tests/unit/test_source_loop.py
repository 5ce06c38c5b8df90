"""A source deployment through the real loop on the fakes: it waits for its build (no
container touched, the old release serving), then converges onto the built image; scaling
rebuilds nothing; a failed build leaves the previous release running."""

from __future__ import annotations

from controller.model.builds import BuildStatus
from controller.model.phases import Phase
from tests.fakes import Cluster

GIT = {"git": {"url": "file:///src/app", "ref": "main"}}


def images(cluster: Cluster, name: str) -> list[str]:
    return sorted(c.request.image for c in cluster.runtime.of(name))


def test_a_source_deployment_waits_for_its_build_then_runs_the_image() -> None:
    cluster = Cluster()
    cluster.store.apply("web", source=GIT, replicas=2)
    cluster.drive("web")
    status = cluster.store.status("web")
    assert (status.phase, status.message) == (Phase.QUEUED, "build queued: position 1 of 1")
    assert cluster.runtime.of("web") == []
    [build] = cluster.store.builds
    assert (build.generation, build.source) == (
        1,
        {**GIT, "dockerfile": "Dockerfile", "context": "."},
    )

    cluster.store.set_build(1, status=BuildStatus.RUNNING, step="step 2/4", progress=25)
    cluster.drive("web")
    status = cluster.store.status("web")
    assert (status.phase, status.phase_progress, status.message) == (
        Phase.BUILDING,
        25,
        "build 1: step 2/4",
    )
    assert status.phase_metadata["build_id"] == 1

    cluster.runtime.images.add("berth-build/web:k1")  # what the build job made
    cluster.store.set_build(1, status=BuildStatus.SUCCEEDED, image="berth-build/web:k1")
    cluster.drive("web")
    assert cluster.store.status("web").phase == Phase.ACTIVE
    assert images(cluster, "web") == ["berth-build/web:k1"] * 2

    cluster.store.apply("web", source=GIT, replicas=3)  # scaling: same source, no build
    cluster.drive("web")
    assert len(cluster.store.builds) == 1
    assert images(cluster, "web") == ["berth-build/web:k1"] * 3


def test_a_failed_build_keeps_the_previous_release_serving() -> None:
    cluster = Cluster()
    cluster.store.apply("web", source=GIT)
    cluster.drive("web")
    cluster.runtime.images.add("berth-build/web:k1")  # what the build job made
    cluster.store.set_build(1, status=BuildStatus.SUCCEEDED, image="berth-build/web:k1")
    cluster.drive("web")
    before = [c.id for c in cluster.runtime.of("web")]

    cluster.store.apply("web", source={"git": {"url": "file:///src/app", "ref": "v2"}})
    cluster.drive("web")
    assert len(cluster.store.builds) == 2 and cluster.store.status("web").phase == Phase.QUEUED
    cluster.store.set_build(2, status=BuildStatus.FAILED, error="step 2/3 failed with exit code 1")
    cluster.drive("web")
    status = cluster.store.status("web")
    assert status.phase == Phase.FAILED and status.failure_kind == "permanent"
    assert "exit code 1" in status.message
    assert [c.id for c in cluster.runtime.of("web")] == before
    assert cluster.store.status("web").ready_replicas == 1


def test_waiting_in_the_build_queue_is_not_being_stuck() -> None:
    cluster = Cluster()
    cluster.store.apply("web", source=GIT)
    cluster.drive("web")
    cluster.clock.advance(cluster.settings.stuck_deadline_s * 5)
    cluster.drive()  # full resyncs: they would mark a stuck phase
    status = cluster.store.status("web")
    assert status.phase == Phase.QUEUED and status.failure_kind is None
    assert cluster.store.fetch_one("web") is not None
    assert cluster.store.fetch_one("web").stuck_resumes == 0  # type: ignore[union-attr]
