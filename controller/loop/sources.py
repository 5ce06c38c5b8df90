"""The source stage of a pass: a source deployment's build, before any container is touched.

Called by the reconciler (`controller.loop.reconciler`) for deployments with a `source`.
It observes the newest build of the deployment's source (one query), decides with the pure
`controller.policy.builds.decide`, acts (queues a build, fenced; wakes the dispatcher) and
records where the deployment stands (`queued` with its place in the queue,
`pulling_source`, `building` with the build's step). Only once the build has succeeded
does the pass go on, with the spec running the built image; a failed, dead or cancelled
build fails the pass and leaves the containers of the previous generation serving.
Builds themselves run in the dispatcher's threads, never in a reconcile worker.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from controller.loop.ports import BuildRequests
from controller.loop.status import StatusWriter
from controller.model.errors import BuildFailed
from controller.model.outcome import Outcome
from controller.model.phases import Phase
from controller.model.records import DeploymentRecord
from controller.model.replicas import ObservedReplica
from controller.model.source import source_key
from controller.model.spec import DeploymentSpec
from controller.policy.builds import BUILD_POLL_S, SourceAction, decide


class SourceStage:
    def __init__(
        self,
        store: BuildRequests,
        now: Callable[[], datetime],
        wake_builds: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self._now = now
        self._wake_builds = wake_builds

    def stage(
        self,
        record: DeploymentRecord,
        spec: DeploymentSpec,
        writer: StatusWriter,
        containers: list[ObservedReplica],
    ) -> DeploymentSpec | Outcome:
        """The spec to converge (running the built image), or the outcome of a pass that
        waits for its build. Raises BuildFailed for a build that will not succeed as is."""
        source = spec.source
        assert source is not None
        key = source_key(source)
        build = self.store.current_build(record.name)
        decision = decide(build, key, record.generation, self._now())
        if decision.action == SourceAction.ENQUEUE:
            self.store.enqueue_build(
                writer.fence,
                record.name,
                record.generation,
                source.model_dump(mode="json", exclude_none=True),
                key,
                spec.priority,
                revision=source.known_revision(),
            )
            self._wake_builds()
            build = self.store.current_build(record.name)  # with its place in the queue
            decision = decide(build, key, record.generation, self._now())
        if decision.action == SourceAction.USE:
            assert decision.image is not None
            return spec.with_image(decision.image)
        if decision.action == SourceAction.FAIL:
            raise BuildFailed(decision.message)
        if decision.phase == Phase.QUEUED:
            self._wake_builds()  # a build queued by `berth retry` or by an earlier term
        writer.observe(record.generation, spec.replicas)
        writer.ready(sum(1 for container in containers if container.ready))
        writer.enter(decision.phase, decision.message, **decision.metadata)
        if decision.progress:
            writer.progress(decision.progress, 100)
        return Outcome.again(decision.phase, BUILD_POLL_S, decision.message)
