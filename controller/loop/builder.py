"""The build dispatcher: the leader's one owner of the build queue.

Started by the daemon in a thread of its own; woken by the source stage of a pass when it
queues a build (`wake`), by a job when it ends, and every `POLL_S` otherwise (a retried
build's wait ending, a build queued by another replica's `berth retry`). As the leader it
claims queued builds (`claim_build`: highest priority, then oldest; at most
BERTH_BUILD_CONCURRENCY running cluster-wide, counted in Postgres, so a leader change never
doubles them) and runs each in a `BuildJob` thread. On a new term it first resolves the
builds an earlier term left running: adopted when their image exists, queued again
otherwise, their workspaces discarded. After a successful build it keeps the newest
BERTH_IMAGE_RETENTION images of that deployment and removes older ones nobody uses.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import structlog

from controller.loop.build_job import BuildJob
from controller.loop.ports import (
    BuildQueueStore,
    FenceSource,
    ImageBuilder,
    SourceFetcher,
    WorkspaceArea,
)
from controller.model.builds import BuildRecord, BuildResult, BuildStatus
from controller.model.errors import BerthError, Deposed
from controller.model.records import Fence
from controller.model.settings import Settings
from controller.observability.metrics import BUILD_DURATION, BUILDS, BUILDS_RUNNING

log = structlog.get_logger("berth.builds")
POLL_S = 0.5


class BuildDispatcher:
    def __init__(
        self,
        settings: Settings,
        store: BuildQueueStore,
        git: SourceFetcher,
        builder: ImageBuilder,
        workspaces: WorkspaceArea,
        leadership: FenceSource,
        stopping: threading.Event,
    ) -> None:
        self.settings = settings
        self.store = store
        self.git = git
        self.builder = builder
        self.workspaces = workspaces
        self.leadership = leadership
        self.stopping = stopping
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._jobs: dict[int, BuildJob] = {}
        self._threads: dict[int, threading.Thread] = {}
        self._resolved_term: int | None = None

    def wake(self) -> None:
        self._wake.set()

    def running(self) -> int:
        with self._lock:
            return len(self._jobs)

    # --- the thread ----------------------------------------------------------------------------
    def run(self) -> None:
        while not self.stopping.is_set():
            self._wake.wait(POLL_S)
            self._wake.clear()
            if self.stopping.is_set():
                break
            try:
                fence = self.leadership.fence()
            except Deposed:
                continue
            try:
                if fence.term != self._resolved_term:
                    self._resolve_orphans(fence)
                    self._resolved_term = fence.term
                self._fill(fence)
            except Deposed:
                continue
            except BerthError as error:
                log.warning("build dispatch failed", error=str(error))
        self._stop_jobs()

    def _fill(self, fence: Fence) -> None:
        """Claim builds while this replica and the cluster have room."""
        while self.running() < self.settings.build_concurrency and not self.stopping.is_set():
            build = self.store.claim_build(fence, self.settings.build_concurrency)
            if build is None:
                return
            job = BuildJob(
                self.settings,
                self.store,
                self.git,
                self.builder,
                self.workspaces,
                fence,
                build,
                self.stopping,
            )
            thread = threading.Thread(
                target=self._run_job, args=(job,), name=f"build-{build.id}", daemon=True
            )
            with self._lock:
                self._jobs[build.id] = job
                self._threads[build.id] = thread
            BUILDS_RUNNING.set(self.running())
            log.info(
                "build started",
                deployment=build.deployment,
                build_id=build.id,
                attempt=build.attempts,
            )
            thread.start()

    def _run_job(self, job: BuildJob) -> None:
        build = job.build
        try:
            result = job.run()
            if not job.lost.is_set():
                self._finish(job.fence, build, result)
                if result.status == BuildStatus.SUCCEEDED and not result.cached:
                    self._prune_images(build.deployment)
        except BerthError as error:
            log.warning("could not record the end of a build", build_id=build.id, error=str(error))
        finally:
            with self._lock:
                self._jobs.pop(build.id, None)
                self._threads.pop(build.id, None)
            BUILDS_RUNNING.set(self.running())
            self._wake.set()  # a slot is free: the next build starts now

    def _finish(self, fence: Fence, build: BuildRecord, result: BuildResult) -> None:
        self.store.finish_build(fence, build.id, result)
        BUILDS.labels(status=str(result.status)).inc()
        if (
            result.status != BuildStatus.QUEUED
            and not result.cached
            and build.started_at is not None
        ):
            BUILD_DURATION.labels(status=str(result.status)).observe(
                max(0.0, _seconds_since(build))
            )
        log.info(
            "build ended",
            deployment=build.deployment,
            build_id=build.id,
            status=str(result.status),
            cached=result.cached,
            error=result.error,
        )

    # --- a new term -------------------------------------------------------------------------------
    def _resolve_orphans(self, fence: Fence) -> None:
        """Builds an earlier term left `running`: the image exists -> adopted; else queued
        again (or dead once out of attempts). Never a duplicate build of one revision."""
        for build in self.store.orphan_builds(fence):
            if not self.store.take_over_build(fence, build.id):
                continue
            self.workspaces.discard(build.id)
            lost = f"term {build.term} lost it mid-build"
            if build.image and self.builder.image_present(build.image):
                result = BuildResult(
                    BuildStatus.SUCCEEDED, image=build.image, revision=build.revision
                )
                log.info(
                    "orphaned build adopted: its image exists", build_id=build.id, image=build.image
                )
            elif build.attempts >= self.settings.build_max_attempts:
                result = BuildResult(BuildStatus.DEAD, error=f"{lost}; no attempts left")
            else:
                result = BuildResult(
                    BuildStatus.QUEUED, error=f"requeued: {lost}", retry_after_s=0.0
                )
                log.info("orphaned build queued again", build_id=build.id, attempts=build.attempts)
            self._finish(fence, build, result)

    # --- images ------------------------------------------------------------------------------
    def _prune_images(self, deployment: str) -> None:
        """Keep the newest BERTH_IMAGE_RETENTION built images; older ones go unless in use
        (Docker refuses to remove an image a container uses: it is kept)."""
        try:
            images = self.builder.built_images(deployment, self.settings.cluster)
            for image in images[self.settings.image_retention :]:
                if self.builder.remove_built(image, deployment, self.settings.cluster):
                    log.info(
                        "old built image removed",
                        deployment=deployment,
                        image=image.get("RepoTags"),
                    )
        except BerthError as error:
            log.warning("image retention failed", deployment=deployment, error=str(error))

    def _stop_jobs(self) -> None:
        """Daemon stopping: running builds are killed and queued again for the next leader."""
        with self._lock:
            threads = list(self._threads.values())
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancelled.set()
        for thread in threads:
            thread.join(timeout=5.0)


def _seconds_since(build: BuildRecord) -> float:
    assert build.started_at is not None
    return (datetime.now(UTC) - build.started_at).total_seconds()
