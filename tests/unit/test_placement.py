"""Placement and drains, pure: controller.policy.placement (a slot's constraints, moves
between nodes) and controller.policy.nodes (the next step of a drain). Tables and
hypothesis; the database's copy of the constraint pattern is held to the model's here."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.model.nodes import (
    CONSTRAINT_REGEX,
    Availability,
    NodeState,
    NodeWish,
    ObservedNode,
    Placement,
    PlacementRules,
)
from controller.model.replicas import ObservedReplica, RunState
from controller.policy.nodes import node_step
from controller.policy.placement import (
    node_moves,
    satisfies,
    slot_constraints,
    unsatisfied,
    volume_home,
)

ROOT = Path(__file__).resolve().parents[2]


def node(n: int, zone: str = "a", state: NodeState = NodeState.READY, **kw: object) -> ObservedNode:
    values: dict[str, object] = {
        "id": f"id{n}",
        "name": f"node-{n}@10.0.0.{n}",
        "address": f"10.0.0.{n}",
        "role": "manager" if n == 1 else "worker",
        "availability": Availability.ACTIVE,
        "state": state,
        "labels": {"zone": zone},
        "hostname": f"node-{n}",
    }
    return ObservedNode(**(values | kw))  # type: ignore[arg-type]


THREE = [node(1, "a"), node(2, "b"), node(3, "b")]


@pytest.mark.parametrize(
    ("constraint", "on", "meets"),
    [
        ("node.labels.zone==a", node(1, "a"), True),
        ("node.labels.zone==a", node(2, "b"), False),
        ("node.labels.zone!=a", node(2, "b"), True),
        ("node.labels.rack==r1", node(1), False),
        ("node.role==manager", node(1), True),
        ("node.role!=manager", node(1), False),
        ("node.hostname==node-2", node(2), True),
        ("node.id!=id3", node(3), False),
        ("node.platform.os==linux", node(1), True),
    ],
)
def test_a_constraint_is_met_as_swarm_meets_it(
    constraint: str, on: ObservedNode, meets: bool
) -> None:
    assert satisfies(on, constraint) == meets


def test_max_per_node_excludes_full_nodes_counting_the_other_slots_only() -> None:
    rules = PlacementRules(max_per_node=1)
    placed = [(0, "id1"), (1, "id2")]
    assert slot_constraints(rules, 2, THREE, placed) == ("node.id!=id1", "node.id!=id2")
    # slot 1's replacement: its own old replica does not count against it
    assert slot_constraints(rules, 1, THREE, placed) == ("node.id!=id1",)


def test_spread_goes_to_the_label_value_with_the_fewest_replicas() -> None:
    rules = PlacementRules(spread="zone")
    assert slot_constraints(rules, 0, THREE, []) == ("node.labels.zone==a",)
    assert slot_constraints(rules, 1, THREE, [(0, "id1")]) == ("node.labels.zone==b",)
    declared = PlacementRules(constraints=("node.role!=manager",), spread="zone")
    assert slot_constraints(declared, 0, THREE, []) == ("node.role!=manager", "node.labels.zone==b")


@given(
    replicas=st.integers(1, 12),
    cap=st.integers(1, 4),
    zones=st.lists(st.sampled_from("ab"), min_size=1, max_size=5),
)
def test_placing_slot_after_slot_never_exceeds_max_per_node(
    replicas: int, cap: int, zones: list[str]
) -> None:
    nodes = [node(i + 1, zone) for i, zone in enumerate(zones)]
    rules = PlacementRules(spread="zone", max_per_node=cap)
    placed: list[tuple[int, str]] = []
    for slot in range(replicas):
        constraints = slot_constraints(rules, slot, nodes, placed)
        fits = [n for n in nodes if all(satisfies(n, c) for c in constraints)]
        if not fits:  # every node full: only once they hold `cap` each
            assert len(placed) == len(nodes) * cap
            break
        placed.append((slot, fits[0].id))
    assert max(Counter(n for _, n in placed).values(), default=0) <= cap


HOME = "io.berth.volume-home.berth-web-data"


def test_a_volumes_home_is_the_labelled_node_whatever_its_state_else_an_eligible_one() -> None:
    down = node(2, "b", NodeState.DOWN, labels={HOME: "blue"})
    assert volume_home(["berth-web-data"], PlacementRules(), [node(1), down]) == (down, False)
    chosen, new = volume_home(["berth-web-data"], PlacementRules(), THREE)
    assert new and chosen in THREE
    again, _ = volume_home(["berth-web-data"], PlacementRules(), list(reversed(THREE)))
    assert again == chosen, "the same node for the same volume, whatever the order"
    only_a, _ = volume_home(["berth-web-data"], PlacementRules(("node.labels.zone==a",)), THREE)
    assert only_a == THREE[0], "the declared constraints hold"
    drained = [node(n, availability=Availability.DRAIN) for n in (1, 2)]
    assert volume_home(["berth-web-data"], PlacementRules(), drained) == (None, False)
    assert volume_home([], PlacementRules(), THREE) == (None, False)


@given(st.lists(st.text(alphabet="abcdefghij-", min_size=1, max_size=12), min_size=1, max_size=40))
def test_volumes_spread_over_the_eligible_nodes_and_never_land_elsewhere(names: list[str]) -> None:
    homes = [volume_home([f"berth-{n}"], PlacementRules(), THREE)[0] for n in names]
    assert all(home in THREE for home in homes)


def test_a_placement_nobody_meets_says_so_naming_the_field() -> None:
    rules = PlacementRules(constraints=("node.labels.zone==z",))
    assert unsatisfied(rules, THREE).startswith("placement: no node satisfies node.labels.zone==z")
    assert unsatisfied(PlacementRules(), THREE) == ""
    down = [node(1, state=NodeState.DOWN)]
    assert unsatisfied(PlacementRules(), down).startswith("no node takes replicas")


def replica(slot: int, on: str, rid: str = "", note: str = "") -> ObservedReplica:
    return ObservedReplica(
        rid or f"r{slot}",
        f"berth-web-{slot}",
        "web",
        slot,
        "h",
        state=RunState.RUNNING,
        node=on,
        note=note,
    )


def test_moves_name_the_node_a_replica_left_and_whether_it_was_lost() -> None:
    before = [{"id": "r0", "node": "node-2@10.0.0.2"}, {"id": "r1", "node": "node-3@10.0.0.3"}]
    lost = replica(0, "node-2@10.0.0.2 (lost)")
    assert node_moves(before, [lost]) == [("warning", "replica 0: node node-2@10.0.0.2 lost")]
    again = ObservedReplica(
        "r0", "n", "web", 0, "h", node="node-1@10.0.0.1", moved_from="node-2@10.0.0.2"
    )
    assert node_moves(before, [again]) == [
        ("info", "replica 0 moved from node-2@10.0.0.2 (node lost) to node-1@10.0.0.1")
    ]
    drained = replica(1, "node-1@10.0.0.1")
    assert node_moves(before, [drained]) == [
        ("info", "replica 1 moved from node-3@10.0.0.3 to node-1@10.0.0.1")
    ]
    assert node_moves(before, [replica(5, "node-1@10.0.0.1", "new")]) == [], "new: no move"
    waiting = ObservedReplica(
        "r0", "n", "web", 0, "h", node="unscheduled", moved_from="node-2@10.0.0.2"
    )
    assert node_moves(before, [waiting]) == [
        ("warning", "replica 0: node node-2@10.0.0.2 lost; waiting for another node")
    ]
    assert node_moves([{"id": "r0", "node": "unscheduled"}], [again]) == [
        ("info", "replica 0 moved from node-2@10.0.0.2 (node lost) to node-1@10.0.0.1")
    ], "Swarm took a moment to place it again"
    first = replica(0, "node-1@10.0.0.1")
    assert node_moves([{"id": "r0", "node": "unscheduled"}], [first]) == [], "first placement"
    assert node_moves([{"id": "r0", "node": "local"}], [replica(0, "local")]) == []


def test_a_drain_pauses_moves_start_first_then_drains() -> None:
    wish = NodeWish("id2", "node-2@10.0.0.2", Availability.DRAIN)
    two = node(2)
    here = [replica(0, two.name), replica(1, "node-1@10.0.0.1")]
    first = node_step(two, wish, here, moving=())
    assert first.availability == Availability.PAUSE and first.move == ("r0",)
    paused = node(2, availability=Availability.PAUSE)
    assert node_step(paused, wish, here, moving={"r0"}).move == (), "not asked twice"
    stuck = [replica(0, two.name, note="no suitable node (1 node not available)")]
    assert "cannot move yet: no suitable node" in node_step(paused, wish, stuck, {"r0"}).note
    done = node_step(paused, wish, [here[1]], moving={"r0"})
    assert done.availability == Availability.DRAIN and done.note.startswith("drained")
    active = NodeWish("id2", "node-2@10.0.0.2", Availability.ACTIVE)
    assert node_step(node(2, availability=Availability.DRAIN), active, [], ()).availability == (
        Availability.ACTIVE
    )
    assert node_step(two, active, [], ()).availability is None


def test_the_database_checks_the_models_constraint_pattern() -> None:
    sql = (ROOT / "controller/sql/migrations/0018_nodes.sql").read_text()
    assert CONSTRAINT_REGEX in sql.replace("''", "'")
    with pytest.raises(ValueError, match="constraints"):
        Placement(constraints=["zone==a"])
    assert re.match(CONSTRAINT_REGEX, "node.labels.zone == a")
    assert Placement(constraints=["node.labels.zone == a"]).rules().constraints == (
        "node.labels.zone==a",
    )
