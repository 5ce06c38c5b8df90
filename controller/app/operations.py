"""Operator actions shared by the CLI and the HTTP API: roll back, build again, read logs.

Called by `controller.app.cli_rollout`, `controller.app.cli_builds` and the API's routes
(`controller.app.api_deployments`). Each is a row change an operator could make with SQL
(the row stays the single source of truth), or a read of Docker for container output.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from controller.gateways.postgres import Database
from controller.model.builds import BuildRecord
from controller.model.errors import Conflict, InvalidSpec, NotFound
from controller.model.replicas import ObservedReplica, RunState
from controller.model.source import source_key
from controller.model.spec import parse_spec
from controller.model.workload import WORKLOAD_FIELDS

BOOKKEEPING = ("generation", "created_at", "updated_at", "stream_seq")


class ReplicaOutput(Protocol):
    """What reading a replica's output needs of a runtime (`DockerRuntime`)."""

    def observe(self, deployment: str | None = None) -> list[ObservedReplica]: ...

    def follow_output(self, replica_id: str, lines: int, follow: bool) -> Iterator[str]: ...


@dataclass(frozen=True)
class RolledBack:
    revision: int
    image: str
    generation: int


def roll_back(database: Database, name: str, to_revision: int | None) -> RolledBack:
    """Write a revision's spec back into the deployment (its image is reused: no build, no
    pull). Default: after a rollback the serving revision, else the one it superseded."""
    rows = database.revisions.revisions(name)
    if not rows:
        raise NotFound(f"deployment {name!r} has no revisions")
    if to_revision is None:
        wanted = "serving" if rows[0]["outcome"] == "rolled_back" else "superseded"
        candidates = [r for r in rows if r["outcome"] == wanted]
        if not candidates:
            raise Conflict(f"deployment {name!r} has no earlier revision to go back to")
        target = candidates[0]
    else:
        matching = [r for r in rows if r["revision"] == to_revision]
        if not matching:
            raise NotFound(f"deployment {name!r} has no revision {to_revision}")
        target = matching[0]
    current = database.views.spec_row(name)
    if current is None:
        raise NotFound(f"deployment {name!r} not found")
    spec = parse_spec({**target["spec"], "name": name, "priority": current["priority"]})
    generation, _ = database.deployments.upsert_deployment(spec.model_dump(mode="json"))
    return RolledBack(int(target["revision"]), str(target["image"]), generation)


def build_again(database: Database, name: str, requested_by: str) -> BuildRecord:
    """Queue a new build of the deployment's source (re-resolving a branch)."""
    row = database.views.spec_row(name)
    if row is None:
        raise NotFound(f"deployment {name!r} not found")
    spec = parse_spec({key: value for key, value in row.items() if key not in BOOKKEEPING})
    if spec.source is None:
        raise InvalidSpec(f"source: deployment {name!r} runs an image, it has nothing to build")
    return database.builds.enqueue_build(
        None,
        name,
        int(row["generation"]),
        spec.source.model_dump(mode="json", exclude_none=True),
        source_key(spec.source),
        spec.priority,
        revision=spec.source.known_revision(),
        requested_by=requested_by,
    )


def replica_output(
    runtime: ReplicaOutput, cluster: str, name: str, replica: int, tail: int, follow: bool
) -> Iterator[str]:
    """A replica's output (during a rollout a slot has two: the newest running one is read)."""
    found = [c for c in runtime.observe(name) if c.replica == replica and c.cluster == cluster]
    if not found:
        raise NotFound(f"deployment {name!r} has no container for replica {replica}")
    found.sort(key=lambda c: (c.state != RunState.RUNNING, -c.created))
    return runtime.follow_output(found[0].id, tail, follow)


def spec_document(row: dict[str, Any]) -> dict[str, Any]:
    """A deployment row as the spec an operator wrote (no bookkeeping)."""
    return {key: value for key, value in row.items() if key not in BOOKKEEPING}


def shown_spec(row: dict[str, Any]) -> dict[str, Any]:
    """A deployment row fit to show (`berth describe`): command, env with each secret as
    `<secret:NAME>`, ports, healthcheck, labels, and the workload fields it sets."""
    spec = parse_spec(spec_document(row))
    shown = {key: row[key] for key in ("command", "ports", "healthcheck", "labels")}
    shown["env"] = spec.shown_env()
    shown.update(spec.model_dump(mode="json", include=set(WORKLOAD_FIELDS), exclude_defaults=True))
    return shown
