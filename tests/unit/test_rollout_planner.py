"""Start-first rollouts in the planner: an old container serves until its replacement is
ready, at most `max_surge` slots are in flight, `max_unavailable` slots may be emptied."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.model.replicas import Health, ObservedReplica
from controller.policy.planner import (
    CreateReplica,
    DesiredDeployment,
    RetireReplica,
    plan_deployment,
)

OLD, NEW = "old0000000000000", "new0000000000000"


def fleet(replicas: int) -> list[ObservedReplica]:
    return [ObservedReplica(f"o{i}", f"berth-web-{i}-old", "web", i, OLD) for i in range(replicas)]


def step(
    desired: DesiredDeployment, containers: list[ObservedReplica], ids: itertools.count[int]
) -> tuple[list[ObservedReplica], list[object]]:
    """One pass: plan, apply (a new container starts not yet healthy)."""
    actions = plan_deployment(desired, "web", containers)
    removed = {a.replica_id for a in actions if isinstance(a, RetireReplica)}
    after = [c for c in containers if c.id not in removed]
    for action in actions:
        if isinstance(action, CreateReplica):
            n = next(ids)
            after.append(
                ObservedReplica(
                    f"n{n}",
                    f"berth-web-{action.replica}-new",
                    "web",
                    action.replica,
                    NEW,
                    health=Health.STARTING,
                )
            )
    return after, list(actions)


def become_ready(containers: list[ObservedReplica]) -> list[ObservedReplica]:
    from dataclasses import replace

    return [
        replace(c, health=Health.HEALTHY) if c.health == Health.STARTING else c for c in containers
    ]


@settings(max_examples=60, deadline=None)
@given(
    replicas=st.integers(min_value=1, max_value=8),
    surge=st.integers(min_value=0, max_value=4),
    unavailable=st.integers(min_value=0, max_value=3),
)
def test_start_first_keeps_every_slot_served_and_converges(
    replicas: int, surge: int, unavailable: int
) -> None:
    if surge + unavailable == 0:
        return  # refused by the database and the spec: the rollout could not move
    desired = DesiredDeployment("web", replicas, NEW, True, surge, unavailable)
    containers, ids = fleet(replicas), itertools.count()
    for _ in range(4 * replicas + 4):
        containers, actions = step(desired, containers, ids)
        served = {c.replica for c in containers if c.ready}
        assert len(served) >= replicas - unavailable, "more slots emptied than allowed"
        in_flight = {c.replica for c in containers if c.spec_hash == NEW and not c.ready}
        old_slots = {c.replica for c in containers if c.spec_hash == OLD}
        assert len(in_flight & old_slots) <= surge, "more slots in flight than max_surge"
        if not actions:
            break
        containers = become_ready(containers)
    assert sorted(int(c.replica or 0) for c in containers) == list(range(replicas))
    assert all(c.spec_hash == NEW and c.ready for c in containers)


def test_an_old_container_stays_until_its_replacement_is_ready() -> None:
    desired = DesiredDeployment("web", 2, NEW, True, 1, 0)
    first = plan_deployment(desired, "web", fleet(2))
    assert first == [CreateReplica("web", 0)]  # one slot at a time, nothing removed
    starting = [*fleet(2), ObservedReplica("n0", "n0", "web", 0, NEW, health=Health.STARTING)]
    assert plan_deployment(desired, "web", starting) == []  # waits: the old one serves
    ready = [*fleet(2), ObservedReplica("n0", "n0", "web", 0, NEW, health=Health.HEALTHY)]
    second = plan_deployment(desired, "web", ready)
    assert [type(a).__name__ for a in second] == ["RetireReplica", "CreateReplica"]
    assert isinstance(second[0], RetireReplica) and second[0].replica_id == "o0"


def test_stop_first_replaces_at_once() -> None:
    desired = DesiredDeployment("web", 2, NEW)
    actions = plan_deployment(desired, "web", fleet(2))
    assert [type(a).__name__ for a in actions] == ["RetireReplica", "CreateReplica"] * 2
