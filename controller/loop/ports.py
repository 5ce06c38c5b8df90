"""What the loop needs of the outside world, as protocols: the two gateways and leadership.

The real implementations are `controller.gateways.postgres.Database`,
`controller.gateways.docker_engine.DockerGateway` and `controller.loop.leadership.Leadership`;
the in-memory fakes in tests/fakes.py answer the same calls, so the loop's behaviour is
unit-tested in seconds. Imported by the reconciler, the resync, the executor, the status
writer and the restart gate for their type hints.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from controller.model.containers import ContainerRequest, ContainerState, ObservedContainer
from controller.model.records import (
    Claim,
    DeploymentRecord,
    Event,
    Fence,
    Intent,
    MutationRecord,
    StatusWrite,
)


class StateStore(Protocol):
    """Desired state in, observed state out: the loop's view of Postgres."""

    def fetch_all(self) -> list[DeploymentRecord]: ...

    def fetch_one(self, name: str) -> DeploymentRecord | None: ...

    def record(
        self,
        fence: Fence,
        status: StatusWrite | None,
        events: Sequence[Event] = (),
        create_row: bool = False,
    ) -> None: ...

    def forget(self, fence: Fence, name: str, events: Sequence[Event] = ()) -> None: ...

    def mutation(
        self, fence: Fence, deployment: str, action: str, target: str
    ) -> AbstractContextManager[MutationRecord]: ...

    def unfinished_intents(self, fence: Fence) -> list[Intent]: ...

    def resolve_intent(
        self,
        fence: Fence,
        intent: Intent,
        resolution: str,
        event: Event,
        created: str | None = None,
    ) -> None: ...

    def mark_stuck(self, fence: Fence, name: str, generation: int, event: Event) -> None: ...

    def release_holds(self, fence: Fence, permanent_only: bool = False) -> list[str]: ...

    def prune_mutations(self, older_than_s: float) -> None: ...


class ContainerEngine(Protocol):
    """The loop's view of Docker."""

    def list_managed(self, deployment: str | None = None) -> list[ObservedContainer]: ...

    def ensure_image(self, image: str) -> str: ...

    def create(self, request: ContainerRequest) -> str: ...

    def start(self, container_id: str, from_state: str = "created") -> None: ...

    def restart(self, container_id: str, stop_timeout_s: int) -> None: ...

    def remove(self, container_id: str, stop_timeout_s: int) -> None: ...

    def inspect_state(self, container_id: str) -> ContainerState: ...

    def logs_tail(self, container_id: str, lines: int = 20) -> str: ...


class EventSource(Protocol):
    """Docker's event streams, for the watchers."""

    def container_events(self) -> Iterator[tuple[str, str, str]]: ...

    def image_events(self) -> Iterator[str]: ...


class ElectionSession(Protocol):
    """The leader-election session (`controller.gateways.lock_session.LockSession`)."""

    def acquire(self, key: int) -> None: ...

    def claim_term(self, cluster: str, node_id: str, host: str, pid: int) -> Claim: ...

    def limit_statements(self, timeout_s: float) -> None: ...

    def heartbeat(self, cluster: str, term: int, node_id: str) -> tuple[int, str] | None: ...

    def node_sessions(self, cluster: str, node_id: str) -> int: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...


class FenceSource(Protocol):
    """Leadership: a proof of the current term, or Deposed."""

    def fence(self) -> Fence: ...
