"""What the loop needs of the outside world, as protocols, one per concern.

Implemented by the stores of `controller.gateways.postgres.Database` (gathered in `Stores`),
the runtimes (`docker_runtime`, `swarm_runtime`), the lock session and LISTEN of
`controller.gateways.lock_session`, and `controller.loop.leadership.Leadership`; the
in-memory fakes in tests/fakes.py answer the same calls, so the loop is unit-tested in
seconds. Imported by the loop's modules for their type hints.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from controller.model.builds import BuildRecord, BuildResult
from controller.model.claims import ClusterEngine, EngineClaim
from controller.model.nodes import ObservedNode
from controller.model.records import (
    Claim,
    DeploymentRecord,
    Event,
    Fence,
    Intent,
    MutationAction,
    MutationRecord,
    Resolution,
    StatusChange,
    StatusWrite,
)
from controller.model.replicas import ObservedReplica, ReplicaInspection, ReplicaRequest, RunState


class DesiredState(Protocol):
    """The deployments as declared (`controller.gateways.postgres_state.DesiredStore`)."""

    def fetch_all(self) -> list[DeploymentRecord]: ...

    def fetch_one(self, name: str) -> DeploymentRecord | None: ...

    def secret_values(self, names: Collection[str]) -> dict[str, str]: ...


class StatusLog(Protocol):
    """Status rows and their events, fenced (`postgres_state.StatusStore`)."""

    def record(
        self,
        fence: Fence,
        status: StatusWrite | None,
        events: Sequence[Event] = (),
        create_row: bool = False,
    ) -> None: ...

    def forget(self, fence: Fence, name: str, events: Sequence[Event] = ()) -> None: ...

    def mark_stuck(self, fence: Fence, name: str, generation: int, event: Event) -> None: ...

    def release_holds(self, fence: Fence, permanent_only: bool = False) -> list[str]: ...


class MutationLog(Protocol):
    """An intent before each runtime call, its outcome after (`postgres_mutations`); the
    key of the creation proof, and lost creation records written again (`provenance`)."""

    def mutation(
        self,
        fence: Fence,
        deployment: str,
        action: MutationAction,
        target: str,
        status: StatusChange | None = None,
    ) -> AbstractContextManager[MutationRecord]: ...

    def unfinished_intents(self, fence: Fence) -> list[Intent]: ...

    def resolve_intent(
        self,
        fence: Fence,
        intent: Intent,
        resolution: Resolution,
        event: Event,
        created: str | None = None,
    ) -> None: ...

    def proof_key(self) -> bytes: ...

    def record_again(
        self, fence: Fence, deployment: str, replicas: Sequence[tuple[str, str]], event: Event
    ) -> None: ...

    def prune_mutations(self, older_than_s: float) -> None: ...


class RevisionLog(Protocol):
    """The revisions rolled out and rolled back (`postgres_revisions.RevisionStore`)."""

    def serve_revision(
        self,
        fence: Fence,
        deployment: str,
        generation: int,
        spec: dict[str, Any],
        spec_hash: str,
        image: str,
        status: StatusChange | None = None,
        note: Callable[[int], Event] | None = None,
    ) -> int: ...

    def record_rollback(
        self,
        fence: Fence,
        deployment: str,
        generation: int,
        spec: dict[str, Any],
        spec_hash: str,
        image: str,
        reason: str,
    ) -> int: ...


class BuildRequests(Protocol):
    """A pass's side of the build queue (`postgres_builds.BuildStore`)."""

    def current_build(self, deployment: str) -> BuildRecord | None: ...

    def enqueue_build(
        self,
        fence: Fence | None,
        deployment: str,
        generation: int,
        source: dict[str, Any],
        source_key: str,
        priority: int,
        revision: str | None = None,
        requested_by: str = "berth",
    ) -> BuildRecord: ...


class StateStore(DesiredState, StatusLog, MutationLog, RevisionLog, BuildRequests, Protocol):
    """All of the loop's Postgres in one object: what the in-memory fake is."""


@dataclass(frozen=True)
class Stores:
    """The loop's Postgres, one port per concern: the reconciler, the resync and the status
    writer take what they need from here. The daemon fills it with the real stores
    (`controller.gateways.postgres.Database`); the unit tests with one fake for all."""

    desired: DesiredState
    status: StatusLog
    mutations: MutationLog
    revisions: RevisionLog
    builds: BuildRequests

    @classmethod
    def backed_by(cls, store: StateStore) -> Stores:
        return cls(store, store, store, store, store)


class Runtime(Protocol):
    """The loop's view of whatever runs replicas, in the loop's words: a deployment's
    replicas as observed, "run this revision's replica in this slot" (`place`, then
    `start`), "restart this one", "retire this one". The docker runtime
    (`controller.gateways.docker_runtime.DockerRuntime`, one engine) implements it; so do
    the fakes (tests/fakes.py), held to it by tests/contract."""

    # Whether a replica's start, exit and health changes arrive as events (one engine's
    # event stream) or only by looking again (Swarm: no events for tasks on other nodes).
    announces_changes: bool

    def observe(self, deployment: str | None = None) -> list[ObservedReplica]: ...

    def observe_after(
        self, deployment: str, before: Sequence[ObservedReplica], changed: Collection[str]
    ) -> list[ObservedReplica]:
        """What `observe(deployment)` would answer after a pass changed the replicas whose
        ids are `changed`, having observed `before`: the runtime may read only those."""
        ...

    def accepting(self) -> bool:
        """Whether the engine takes a new connection (False: it is shutting down)."""
        ...

    def prepare_image(self, image: str, before_pull: Callable[[], None] | None = None) -> str:
        """The image where replicas run ('present', 'pulled', ...); `before_pull` is
        called before a pull (which may take minutes) is started."""
        ...

    def place(self, request: ReplicaRequest) -> str: ...

    def start(self, replica_id: str, from_state: RunState = RunState.CREATED) -> None: ...

    def restart(self, replica_id: str, grace_s: int) -> None: ...

    def retire(self, replica_id: str, grace_s: int) -> None: ...

    def inspect(self, replica_id: str) -> ReplicaInspection: ...

    def output_tail(self, replica_id: str, lines: int = 20) -> str: ...

    def nodes(self) -> list[ObservedNode]: ...


class EngineClaims(Protocol):
    """The engine's side of one data plane: the claim marker on it (the docker runtime)."""

    def claim_engine(self, cluster: str, database_id: str) -> EngineClaim: ...


class ClusterClaims(Protocol):
    """The database's side: its own id, the engine each cluster runs on (`postgres_claims`)."""

    def installation_id(self) -> str: ...

    def claim_cluster_engine(self, cluster: str, engine_id: str, host: str) -> ClusterEngine: ...


class StorageEngine(Protocol):
    """The loop's view of Docker's volumes and networks (`gateways.docker_storage`)."""

    def ensure_volume(self, name: str, labels: dict[str, str], driver: str = "local") -> bool: ...

    def ensure_network(self, name: str, labels: dict[str, str]) -> bool: ...

    def remove_volume(self, name: str, cluster: str) -> str: ...

    def deployment_volumes(self, deployment: str, cluster: str) -> list[str]: ...

    def unused_networks(self, cluster: str, wanted: set[str]) -> list[str]: ...

    def remove_network(self, name: str, cluster: str) -> bool: ...


class RetentionPort(Protocol):
    """What the janitor prunes in Postgres (`gateways.postgres_retention`)."""

    def prune_events(self, max_age_s: float, keep: int) -> int: ...

    def prune_build_logs(self, max_age_s: float, keep: int) -> int: ...

    def declared_networks(self) -> set[str]: ...

    def deleted_built_deployments(self) -> list[str]: ...

    def registry_images(self, retention: int) -> list[tuple[str, bool]]: ...


class RegistryPort(Protocol):
    """Berth's repositories in the registry (`gateways.registry.RegistryGateway`)."""

    def delete(self, repository: str, digest: str) -> bool: ...

    def collect_garbage(self) -> str: ...


class BuiltImages(Protocol):
    """Images Berth built (`gateways.docker_builds.DockerBuilder`): listed, and removed by
    their names in the deployment's build repository."""

    def built_images(self, deployment: str, cluster: str) -> list[dict[str, object]]: ...

    def every_built_image(self) -> list[dict[str, object]]: ...

    def remove_built(self, image: dict[str, object], deployment: str, cluster: str) -> int: ...


class EventSource(Protocol):
    """Docker's event streams, for the watchers."""

    def container_events(
        self, actions: Collection[str] | None = None
    ) -> Iterator[tuple[str, str, str]]: ...

    def image_events(self) -> Iterator[str]: ...


class ClusterEventSource(Protocol):
    """A swarm manager's node and service events (the swarm runtime's engine)."""

    def cluster_events(self) -> Iterator[str]: ...


class ElectionSession(Protocol):
    """The leader-election session (`controller.gateways.lock_session.LockSession`)."""

    def acquire(self, key: int) -> None: ...

    def claim_term(self, cluster: str, node_id: str, host: str, pid: int) -> Claim: ...

    def limit_statements(self, timeout_s: float) -> None: ...

    def heartbeat(self, cluster: str, term: int, node_id: str) -> tuple[int, str] | None: ...

    def node_sessions(self, cluster: str, node_id: str) -> int: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...


# A LISTEN session (`controller.gateways.lock_session.listener(url)`): called with a named
# LISTEN query and a poll interval, it yields each NOTIFY payload, None once listening and
# then every poll interval without one; raises DatabaseUnavailable when the session is lost.
Listen = Callable[[str, float], Iterator[str | None]]


class FenceSource(Protocol):
    """Leadership: a proof of the current term, or Deposed."""

    def fence(self) -> Fence: ...


class BuildJobStore(Protocol):
    """What a build job needs of Postgres (`controller.gateways.postgres_builds.BuildStore`)."""

    def build_heartbeat(
        self,
        fence: Fence,
        build_id: int,
        progress: dict[str, Any],
        logs: Sequence[tuple[int, float, str, str]],
    ) -> bool | None: ...

    def read_archive(self, sha256: str, target: BinaryIO) -> None: ...


class BuildQueueStore(BuildJobStore, Protocol):
    """What the build dispatcher needs of Postgres."""

    def claim_build(self, fence: Fence, limit: int) -> BuildRecord | None: ...

    def finish_build(self, fence: Fence, build_id: int, result: BuildResult) -> bool: ...

    def orphan_builds(self, fence: Fence) -> list[BuildRecord]: ...

    def take_over_build(self, fence: Fence, build_id: int) -> bool: ...


class SourceFetcher(Protocol):
    """git (`controller.gateways.git_source.GitGateway`)."""

    def resolve(
        self,
        url: str,
        ref: str | None,
        on_line: Callable[[str, str], None],
        cancelled: threading.Event,
    ) -> str: ...

    def checkout(
        self,
        url: str,
        ref: str | None,
        commit: str,
        directory: Path,
        on_line: Callable[[str, str], None],
        cancelled: threading.Event,
    ) -> str: ...


class ImageBuilder(BuiltImages, Protocol):
    """Docker's build side (`controller.gateways.docker_builds.DockerBuilder`)."""

    def image_present(self, image: str) -> bool: ...

    def build(
        self,
        context: Path,
        dockerfile: Path,
        tag: str,
        on_line: Callable[[str, str], None],
        cancelled: threading.Event,
    ) -> None: ...

    def publish(self, tag: str, registry: str) -> str: ...


class WorkspaceArea(Protocol):
    """Build workspaces on disk (`controller.gateways.workspace.Workspaces`)."""

    def fresh(self, build_id: int, attempt: int) -> Path: ...

    def discard(self, build_id: int) -> None: ...

    def count_files(self, directory: Path) -> int: ...

    def allowed_archive(self, path_text: str, allowed: list[Path]) -> Path: ...

    def file_sha256(self, path: Path) -> str: ...

    def unpack(self, archive: Path, directory: Path, max_bytes: int) -> int: ...
