"""The node keeper: records the runtime's nodes in Postgres and carries out operators'
drains and activations.

Called by the full resync (`controller.loop.resync`) on the leader, with the replicas it
just observed. Observe (the runtime's nodes, the wishes in `cluster_nodes`) → decide
(`controller.policy.nodes.node_step`) → act (availability, start-first moves, through the
`NodeControl` port) → record (the nodes and each wish's note, fenced). A move asked for is
not asked again for `MOVE_AGAIN_AFTER_S`: Swarm is bringing up the replica's new task.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog

from controller.loop.ports import Runtime
from controller.model.errors import BerthError
from controller.model.nodes import Availability, NodeWish, ObservedNode
from controller.model.records import Fence
from controller.model.replicas import ObservedReplica
from controller.policy.nodes import node_step

log = structlog.get_logger("berth.nodes")


# The keeper's own ports (beside the runtime's `nodes()`).
class NodeControl(Protocol):
    """What a runtime with nodes lets Berth do to them (the swarm runtime)."""

    def set_availability(self, node_id: str, availability: Availability) -> None: ...

    def move_off(self, replica_id: str) -> None: ...


class NodeLog(Protocol):
    """The nodes in Postgres (`gateways/postgres_nodes`): recorded, wished for, noted."""

    def record_nodes(self, fence: Fence, nodes: list[ObservedNode]) -> None: ...

    def node_wishes(self, cluster: str) -> list[NodeWish]: ...

    def note_node(self, fence: Fence, node_id: str, note: str) -> None: ...


MOVE_AGAIN_AFTER_S = 120.0


class NodeKeeper:
    def __init__(
        self,
        runtime: Runtime,
        store: NodeLog,
        control: NodeControl | None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self.store = store
        self.control = control
        self._monotonic = monotonic
        self._moved: dict[str, float] = {}

    def keep(self, fence: Fence, replicas: Sequence[ObservedReplica]) -> None:
        nodes = self.runtime.nodes()
        self.store.record_nodes(fence, nodes)
        by_id = {node.id: node for node in nodes}
        now = self._monotonic()
        self._moved = {k: t for k, t in self._moved.items() if now - t < MOVE_AGAIN_AFTER_S}
        for wish in self.store.node_wishes(fence.cluster):
            node = by_id.get(wish.node_id)
            if node is None:
                continue
            if self.control is None:
                note = "this runtime has one node: nothing to drain or pause"
            else:
                step = node_step(node, wish, replicas, self._moved.keys())
                note = step.note
                try:
                    if step.availability is not None:
                        self.control.set_availability(node.id, step.availability)
                        log.info(
                            "node availability", node=node.name, availability=str(step.availability)
                        )
                    for replica_id in step.move:
                        self.control.move_off(replica_id)
                        self._moved[replica_id] = now
                        log.info("replica moving off node", node=node.name, replica=replica_id[:12])
                except BerthError as error:
                    note = f"{note}; failed: {error}"
                    log.warning("node step failed", node=node.name, error=str(error))
            if note != wish.note:
                self.store.note_node(fence, node.id, note)
