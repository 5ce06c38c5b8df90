"""Nodes and placement: where a runtime with several nodes may run a deployment's replicas.

Pure data. `ObservedNode` is one node as the swarm runtime reports it (the docker runtime
reports its one engine as the node `local`); `Placement` is the deployment field an operator
declares (constraints on node attributes and labels, spread over a label, at most N replicas
per node) and `PlacementRules` its plain form in a `ReplicaRequest`. `Availability` and
`NodeState` are the one vocabulary of a node's availability and state. Imported by the spec,
the runtimes, `controller.policy.placement` (which turns rules into a slot's constraints),
the node keeper and the CLI. The database checks the same patterns
(`sql/migrations/0018_nodes.sql`); a unit test keeps them equal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# A constraint on a node, in Swarm's syntax: `node.labels.zone==a`, `node.role!=manager`.
CONSTRAINT_REGEX = (
    r"^node\.(id|hostname|role|platform\.os|platform\.arch|labels\.[A-Za-z0-9_][A-Za-z0-9_.-]{0,62})"
    r" *(==|!=) *[A-Za-z0-9_.:@/-]{1,128}$"
)
CONSTRAINT_PATTERN = re.compile(CONSTRAINT_REGEX)
LABEL_KEY_REGEX = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$"
MAX_CONSTRAINTS = 16
# How a replica's node reads when the runtime has not placed it, or no longer hears from it.
UNSCHEDULED = "unscheduled"
LOST_SUFFIX = " (lost)"


class Availability(StrEnum):
    """Whether a node takes tasks: Swarm's words (`pause`: keeps its tasks, takes no new)."""

    ACTIVE = "active"
    PAUSE = "pause"
    DRAIN = "drain"


class NodeState(StrEnum):
    """Whether the cluster hears from a node."""

    READY = "ready"
    DOWN = "down"
    DISCONNECTED = "disconnected"
    UNKNOWN = "unknown"


def node_state(text: str) -> NodeState:
    try:
        return NodeState(text)
    except ValueError:
        return NodeState.UNKNOWN


@dataclass(frozen=True)
class ObservedNode:
    """One node: `name` is `hostname@address` (hostnames may repeat), `id` the runtime's."""

    id: str
    name: str
    address: str
    role: str
    availability: Availability
    state: NodeState
    labels: Mapping[str, str] = field(default_factory=dict)
    hostname: str = ""
    engine_version: str = ""

    @property
    def takes_replicas(self) -> bool:
        """Ready and active: the scheduler may place a new replica here."""
        return self.state == NodeState.READY and self.availability == Availability.ACTIVE


@dataclass(frozen=True)
class PlacementRules:
    """A deployment's placement in plain form (what a `ReplicaRequest` carries)."""

    constraints: tuple[str, ...] = ()
    spread: str | None = None
    max_per_node: int | None = None

    @property
    def empty(self) -> bool:
        return not self.constraints and self.spread is None and self.max_per_node is None

    def describe(self) -> str:
        parts = [*self.constraints]
        if self.spread:
            parts.append(f"spread over node.labels.{self.spread}")
        if self.max_per_node is not None:
            parts.append(f"at most {self.max_per_node} per node")
        return ", ".join(parts) or "anywhere"


class Placement(BaseModel):
    """The `placement` field: where a deployment's replicas may run (swarm runtime)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    constraints: list[Annotated[str, Field(pattern=CONSTRAINT_REGEX)]] = Field(
        default_factory=list, max_length=MAX_CONSTRAINTS
    )
    spread: str | None = Field(default=None, pattern=LABEL_KEY_REGEX)
    max_per_node: int | None = Field(default=None, ge=1, le=1000)

    def rules(self) -> PlacementRules:
        return PlacementRules(
            tuple(c.replace(" ", "") for c in self.constraints), self.spread, self.max_per_node
        )


@dataclass(frozen=True)
class NodeWish:
    """An operator's wish for a node (`cluster_nodes.wanted_availability`), with the note
    the leader last wrote on how it goes."""

    node_id: str
    name: str
    wanted: Availability
    note: str = ""
