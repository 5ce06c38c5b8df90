"""Draining and activating nodes: what to do next about one node an operator wants drained,
paused or active. Pure: a function of (node, wish, the replicas on it, those moving).

Called by the node keeper (`controller.loop.nodes`) at each full resync. A drain moves
Berth's replicas off the node under the rollout's own rule, start-first: the node is paused
first (it keeps its tasks and takes no new one), each replica on it gets a new task started
elsewhere before its old one stops, and only when none is left does Swarm drain the node
(which also stops what is not Berth's there: the operator asked for it). A replica that
cannot move (no other node meets its placement) keeps running where it is, and the node's
note says why.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from controller.model.nodes import Availability, NodeWish, ObservedNode
from controller.model.replicas import ObservedReplica


@dataclass(frozen=True)
class NodeStep:
    """Set the node's availability (if not None), move these replicas, write this note."""

    availability: Availability | None = None
    move: tuple[str, ...] = ()
    note: str = ""
    moving: tuple[str, ...] = field(default=())


def on_node(node: ObservedNode, replicas: Sequence[ObservedReplica]) -> list[ObservedReplica]:
    return [r for r in replicas if r.node == node.name or r.node.startswith(node.name + " ")]


def node_step(
    node: ObservedNode,
    wish: NodeWish,
    replicas: Sequence[ObservedReplica],
    moving: Collection[str],
) -> NodeStep:
    """The next step towards `wish` for `node`; `replicas` are Berth's replicas everywhere,
    `moving` the ids already asked to move (not asked again)."""
    if wish.wanted != Availability.DRAIN:
        change = None if node.availability == wish.wanted else wish.wanted
        return NodeStep(availability=change, note="" if change is None else f"{wish.wanted}")
    here = on_node(node, replicas)
    if not here:
        if node.availability == Availability.DRAIN:
            return NodeStep(note="drained: no Berth replica on it")
        return NodeStep(availability=Availability.DRAIN, note="drained: no Berth replica on it")
    pause = Availability.PAUSE if node.availability == Availability.ACTIVE else None
    to_move = tuple(sorted(r.id for r in here if r.id not in moving))
    waiting = [r for r in here if r.id in moving]
    names = ", ".join(f"{r.deployment}/{r.replica}" for r in here[:5])
    note = f"draining: {len(here)} replica(s) to move start-first ({names})"
    stuck = [r for r in waiting if r.note]
    if stuck:
        first = stuck[0]
        note += f"; {first.deployment}/{first.replica} cannot move yet: {first.note}"
    return NodeStep(availability=pause, move=to_move, note=note, moving=tuple(r.id for r in here))
