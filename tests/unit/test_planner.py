"""The planner, as tables of cases and as hypothesis properties."""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.model.replicas import Health, ObservedReplica, RunState
from controller.policy.planner import (
    CreateReplica,
    DesiredDeployment,
    RestartReplica,
    RetireReplica,
    StartReplica,
    plan,
    ready_replicas,
)

_ids = itertools.count()


def container(
    deployment: str | None = "web",
    replica: int | None = 0,
    spec_hash: str | None = "h1",
    state: str = "running",
    cluster: str = "default",
    health: str = "none",
    created: int = 0,
) -> ObservedReplica:
    ident = f"c{next(_ids):04d}"
    return ObservedReplica(
        id=ident,
        name=f"n-{ident}",
        deployment=deployment,
        replica=replica,
        spec_hash=spec_hash,
        cluster=cluster,
        state=RunState(state),
        health=Health(health),
        created=created,
    )


WEB = DesiredDeployment("web", replicas=2, spec_hash="h1")


def kinds(actions: Sequence[object]) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for action in actions:
        if isinstance(action, RetireReplica):
            out.append(("remove", action.reason.value))
        elif isinstance(action, CreateReplica):
            out.append(("create", action.replica))
        elif isinstance(action, StartReplica):
            out.append(("start", action.replica))
        elif isinstance(action, RestartReplica):
            out.append(("restart", action.replica))
    return out


TABLE = [
    ("nothing exists: create every replica", [WEB], [], {"web": [("create", 0), ("create", 1)]}),
    ("converged: empty plan", [WEB], [container(replica=0), container(replica=1)], {}),
    (
        "stale hash: replace",
        [WEB],
        [container(replica=0, spec_hash="old"), container(replica=1)],
        {"web": [("remove", "stale"), ("create", 0)]},
    ),
    (
        "exited: start, keep",
        [WEB],
        [container(replica=0, state="exited"), container(replica=1)],
        {"web": [("start", 0)]},
    ),
    (
        "created but never started: start",
        [WEB],
        [container(replica=0, state="created"), container(replica=1)],
        {"web": [("start", 0)]},
    ),
    (
        "paused: unpause through start",
        [WEB],
        [container(replica=0, state="paused"), container(replica=1)],
        {"web": [("start", 0)]},
    ),
    (
        "unhealthy: restart",
        [WEB],
        [container(replica=0, health="unhealthy"), container(replica=1)],
        {"web": [("restart", 0)]},
    ),
    (
        "dead: remove and recreate",
        [WEB],
        [container(replica=0, state="dead"), container(replica=1)],
        {"web": [("remove", "dead"), ("create", 0)]},
    ),
    (
        "scale down: surplus removed",
        [DesiredDeployment("web", 1, "h1")],
        [container(replica=0), container(replica=1), container(replica=2)],
        {"web": [("remove", "surplus"), ("remove", "surplus")]},
    ),
    (
        "scale to zero",
        [DesiredDeployment("web", 0, "h1")],
        [container(replica=0)],
        {"web": [("remove", "surplus")]},
    ),
    (
        "deleted deployment: orphans",
        [],
        [container(replica=0), container(replica=1)],
        {"web": [("remove", "orphan"), ("remove", "orphan")]},
    ),
    (
        "duplicate in a slot: keep the running one",
        [DesiredDeployment("web", 1, "h1")],
        [container(replica=0, state="exited"), container(replica=0)],
        {"web": [("remove", "duplicate")]},
    ),
    (
        "unreadable replica label",
        [WEB],
        [container(replica=None), container(replica=0), container(replica=1)],
        {"web": [("remove", "bad_replica_label")]},
    ),
    (
        "being removed: leave it, create beside",
        [DesiredDeployment("web", 1, "h1")],
        [container(replica=0, state="removing")],
        {"web": [("create", 0)]},
    ),
    ("unmanaged containers are invisible", [], [container(deployment=None, replica=None)], {}),
    ("another cluster's containers are invisible", [], [container(cluster="other")], {}),
]


@pytest.mark.parametrize(
    ("desired", "observed", "expected"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE]
)
def test_plan_table(
    desired: list[DesiredDeployment],
    observed: list[ObservedReplica],
    expected: dict[str, list[tuple[str, object]]],
) -> None:
    result = plan(desired, observed)
    assert {name: kinds(actions) for name, actions in result.items()} == expected


def test_removals_of_a_slot_come_before_its_create() -> None:
    result = plan([DesiredDeployment("web", 1, "h2")], [container(replica=0, spec_hash="h1")])
    assert kinds(result["web"]) == [("remove", "stale"), ("create", 0)]


def test_keeper_is_the_oldest_running_container() -> None:
    young = container(replica=0, created=200)
    old = container(replica=0, created=100)
    [removal] = plan([DesiredDeployment("web", 1, "h1")], [young, old])["web"]
    assert isinstance(removal, RetireReplica) and removal.replica_id == young.id


def test_ready_replicas_counts_current_healthy_slots_once() -> None:
    observed = [
        container(replica=0, health="healthy"),
        container(replica=1, health="starting"),
        container(replica=2, spec_hash="old"),
        container(replica=0, health="none"),
    ]
    assert ready_replicas(DesiredDeployment("web", 3, "h1"), observed) == 1


# --- properties ---------------------------------------------------------------------
NAMES = ["a", "b", "c", "d"]
HASHES = ["h1", "h2"]
STATES = ["running", "created", "exited", "paused", "dead", "restarting", "removing"]

desired_strategy = st.dictionaries(
    st.sampled_from(NAMES),
    st.tuples(st.integers(0, 4), st.sampled_from(HASHES)),
    max_size=4,
).map(lambda d: [DesiredDeployment(n, r, h) for n, (r, h) in sorted(d.items())])

container_strategy = st.builds(
    lambda deployment, replica, spec_hash, state, cluster, created, health: container(
        deployment=deployment,
        replica=replica,
        spec_hash=spec_hash,
        state=state,
        cluster=cluster,
        created=created,
        health=health,
    ),
    st.one_of(st.none(), st.sampled_from([*NAMES, "gone"])),
    st.one_of(st.none(), st.integers(-1, 5)),
    st.one_of(st.none(), st.sampled_from(HASHES)),
    st.sampled_from(STATES),
    st.sampled_from(["default", "default", "other"]),
    st.integers(0, 3),
    st.sampled_from(["none", "healthy", "starting", "unhealthy"]),
)


def apply_plan(
    desired: list[DesiredDeployment],
    observed: list[ObservedReplica],
    actions: Mapping[str, Sequence[object]],
) -> list[ObservedReplica]:
    """What Docker would hold after the actions (and after in-progress removals finish)."""
    by_id = {c.id: c for c in observed if c.state != "removing"}
    hashes = {d.name: d.spec_hash for d in desired}
    for deployment_actions in actions.values():
        for action in deployment_actions:
            if isinstance(action, RetireReplica):
                by_id.pop(action.replica_id)
            elif isinstance(action, CreateReplica):
                new = container(action.deployment, action.replica, hashes[action.deployment])
                by_id[new.id] = new
            elif isinstance(action, StartReplica | RestartReplica):
                old = by_id[action.replica_id]
                restarted = {**old.__dict__, "state": "running", "health": "starting"}
                by_id[old.id] = ObservedReplica(**restarted)
    return list(by_id.values())


@settings(max_examples=300, deadline=None)
@given(desired_strategy, st.lists(container_strategy, max_size=14))
def test_applying_the_plan_yields_the_desired_state(
    desired: list[DesiredDeployment], observed: list[ObservedReplica]
) -> None:
    after = apply_plan(desired, observed, plan(desired, observed))
    managed = [c for c in after if c.deployment is not None and c.cluster == "default"]
    for deployment in desired:
        mine = [c for c in managed if c.deployment == deployment.name]
        assert sorted(c.replica for c in mine) == list(range(deployment.replicas))  # type: ignore[type-var]
        assert all(c.spec_hash == deployment.spec_hash for c in mine)
        assert all(c.state in ("running", "restarting") for c in mine)
        assert all(c.health != "unhealthy" or c.state == "restarting" for c in mine)
    assert {c.deployment for c in managed} <= {d.name for d in desired}


@settings(max_examples=300, deadline=None)
@given(desired_strategy, st.lists(container_strategy, max_size=14))
def test_a_converged_state_plans_nothing(
    desired: list[DesiredDeployment], observed: list[ObservedReplica]
) -> None:
    after = apply_plan(desired, observed, plan(desired, observed))
    assert plan(desired, after) == {}


@settings(max_examples=300, deadline=None)
@given(desired_strategy, st.lists(container_strategy, max_size=14))
def test_unmanaged_and_foreign_containers_never_appear(
    desired: list[DesiredDeployment], observed: list[ObservedReplica]
) -> None:
    untouchable = {c.id for c in observed if c.deployment is None or c.cluster != "default"}
    for actions in plan(desired, observed).values():
        for action in actions:
            assert getattr(action, "container_id", None) not in untouchable


@settings(max_examples=100, deadline=None)
@given(desired_strategy, st.lists(container_strategy, max_size=14), st.randoms())
def test_the_plan_does_not_depend_on_listing_order(
    desired: list[DesiredDeployment], observed: list[ObservedReplica], rng: random.Random
) -> None:
    shuffled = list(observed)
    rng.shuffle(shuffled)
    assert plan(desired, observed) == plan(list(reversed(desired)), shuffled)


def test_an_unrecorded_container_is_replaced_not_kept() -> None:
    stranger = replace(container(replica=0), recorded=False)
    ours = container(replica=1)
    desired = DesiredDeployment("web", 2, "h1")
    assert kinds(plan([desired], [stranger, ours])["web"]) == [
        ("remove", "unrecorded"),
        ("create", 0),
    ]
    assert ready_replicas(desired, [stranger, ours]) == 1
