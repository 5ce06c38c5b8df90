"""Placement: the node constraints of one replica, from its deployment's rules and where its
other replicas run. Pure: a function of (rules, slot, nodes, placed).

Called by the swarm runtime when it places a replica (`controller.gateways.swarm_runtime`).
A replica is a service of one task there, so Swarm's own spread preferences and
`MaxReplicas` (which count the tasks of one service) cannot see a deployment's other
replicas: Berth turns `spread` and `max_per_node` into plain constraints on the slot's
service instead (`node.labels.zone==b`, `node.id!=...`), counting the deployment's other
slots where they run now. The old replica of the same slot does not count: it leaves once
its replacement is ready (start-first), and counting it would leave no room for the
replacement under `max_per_node: 1`.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from controller.model.names import LABEL_VOLUME_HOME, LOCAL_NODE
from controller.model.nodes import (
    CONSTRAINT_PATTERN,
    LOST_SUFFIX,
    UNSCHEDULED,
    ObservedNode,
    PlacementRules,
)
from controller.model.replicas import ObservedReplica


def satisfies(node: ObservedNode, constraint: str) -> bool:
    """Whether `node` meets one constraint in Swarm's syntax (checked by the model)."""
    match = CONSTRAINT_PATTERN.match(constraint)
    if match is None:
        return False
    attribute, operator = match.group(1), match.group(2)
    wanted = constraint[match.end(2) :].strip()
    if attribute.startswith("labels."):
        actual: str | None = node.labels.get(attribute.removeprefix("labels."))
    else:
        actual = {"id": node.id, "hostname": node.hostname, "role": node.role}.get(attribute)
    if actual is None and attribute in ("platform.os", "platform.arch"):
        return True  # Swarm checks these itself; Berth does not see them
    return (actual == wanted) == (operator == "==")


def eligible(rules: PlacementRules, nodes: Iterable[ObservedNode]) -> list[ObservedNode]:
    """The nodes that take replicas and meet every declared constraint."""
    return [
        n for n in nodes if n.takes_replicas and all(satisfies(n, c) for c in rules.constraints)
    ]


def slot_constraints(
    rules: PlacementRules,
    slot: int,
    nodes: Sequence[ObservedNode],
    placed: Iterable[tuple[int, str]],
) -> tuple[str, ...]:
    """The constraints of the service of `slot`: the declared ones, plus `node.id!=` each
    node holding `max_per_node` of the other slots, plus `node.labels.<spread>==` the value
    with the fewest of them (ties to the smallest value). `placed` is (slot, node id) of
    the deployment's replicas now."""
    others = Counter(node_id for other, node_id in placed if other != slot and node_id)
    constraints = list(rules.constraints)
    candidates = eligible(rules, nodes)
    if rules.max_per_node is not None:
        full = sorted(n.id for n in candidates if others[n.id] >= rules.max_per_node)
        constraints += [f"node.id!={node_id}" for node_id in full]
        candidates = [n for n in candidates if n.id not in full]
    if rules.spread is not None:
        by_value: Counter[str] = Counter()
        for node in candidates:
            value = node.labels.get(rules.spread)
            if value is not None:
                by_value[value] += others[node.id]
        if by_value:
            fewest = min(by_value.items(), key=lambda item: (item[1], item[0]))[0]
            constraints.append(f"node.labels.{rules.spread}=={fewest}")
    return tuple(constraints)


def volume_home(
    volumes: Sequence[str], rules: PlacementRules, nodes: Sequence[ObservedNode]
) -> tuple[ObservedNode | None, bool]:
    """The node that holds a deployment's node-local named `volumes` (Docker names), and
    whether it is chosen now (to be labelled `LABEL_VOLUME_HOME.<volume>`) rather than read
    from a node's label. A labelled node stays the home whatever its state (its replica
    waits for it: the data is there); else an eligible node, the same for the same first
    volume name while the nodes stay the same (volumes spread over the nodes). None when
    no node is labelled and none is eligible."""
    for volume in volumes:
        for node in sorted(nodes, key=lambda n: n.id):
            if f"{LABEL_VOLUME_HOME}.{volume}" in node.labels:
                return node, False
    candidates = sorted(eligible(rules, nodes), key=lambda n: n.id)
    if not volumes or not candidates:
        return None, False
    digest = int.from_bytes(hashlib.sha256(volumes[0].encode()).digest()[:4], "big")
    return candidates[digest % len(candidates)], True


def unsatisfied(rules: PlacementRules, nodes: Sequence[ObservedNode]) -> str:
    """Why no node can take a replica under `rules`, or "" when one can."""
    if eligible(rules, nodes):
        return ""
    ready = [n for n in nodes if n.takes_replicas]
    if not ready:
        states = ", ".join(f"{n.name} {n.state}/{n.availability}" for n in nodes)
        return f"no node takes replicas ({states or 'no nodes'})"
    return f"placement: no node satisfies {rules.describe()} ({len(ready)} node(s) take replicas)"


def node_moves(
    previous: Sequence[Mapping[str, object]], replicas: Sequence[ObservedReplica]
) -> list[tuple[str, str]]:
    """What changed in where replicas run since the last recorded pass, as (level, message):
    a node lost under a replica, a replica run again on another node (naming the node it
    left, and whether that node was lost). Replicas new since then are no move."""
    before = {str(row.get("id")): str(row.get("node") or "") for row in previous}
    moves: list[tuple[str, str]] = []
    for replica in sorted(replicas, key=lambda r: (r.replica or 0, r.id)):
        was = before.get(replica.id[:12])
        now = replica.node
        if was is None or was == now or now == LOCAL_NODE:
            continue
        slot = f"replica {replica.replica}"
        lost = replica.moved_from or (
            was.removesuffix(LOST_SUFFIX) if was.endswith(LOST_SUFFIX) else ""
        )
        if now.endswith(LOST_SUFFIX):
            moves.append(("warning", f"{slot}: node {now.removesuffix(LOST_SUFFIX)} lost"))
        elif now == UNSCHEDULED and lost:
            moves.append(("warning", f"{slot}: node {lost} lost; waiting for another node"))
        elif now == UNSCHEDULED:
            moves.append(("warning", f"{slot} left {was} and waits for a node"))
        elif lost:
            moves.append(("info", f"{slot} moved from {lost} (node lost) to {now}"))
        elif was != UNSCHEDULED:  # from unscheduled: placed for the first time, no move
            moves.append(("info", f"{slot} moved from {was} to {now}"))
    return moves
