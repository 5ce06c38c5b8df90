"""The full resync's pure decision (controller.policy.resync.survey) and the one
"converged" rule (controller.model.phases): tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.model.phases import SETTLED_PHASES, Phase, converged, settled
from controller.model.records import DeploymentRecord
from controller.model.replicas import ObservedReplica, RunState, replica_rows
from controller.model.spec import parse_spec
from controller.policy.resync import survey

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SPEC = {"name": "web", "image": "x", "replicas": 2}
HASH = parse_spec(SPEC).spec_hash


def replica(
    slot: int, spec_hash: str = HASH, state: RunState = RunState.RUNNING, node: str = "local"
) -> ObservedReplica:
    return ObservedReplica(
        f"id{slot}{spec_hash}", f"berth-web-{slot}", "web", slot, spec_hash, state=state, node=node
    )


BOTH = [replica(0), replica(1)]


def record(**changes: Any) -> DeploymentRecord:
    values: dict[str, Any] = {
        "name": "web",
        "present": True,
        "spec": SPEC,
        "generation": 2,
        "phase": Phase.ACTIVE,
        "phase_updated_at": NOW - timedelta(seconds=10),
        "observed_generation": 2,
        "ready_replicas": 2,
        "failure_kind": None,
        "attempts": 0,
        "next_attempt_at": None,
        "observed_replicas": replica_rows(BOTH),  # where its last pass saw them
    }
    return DeploymentRecord(**(values | changes))


@pytest.mark.parametrize(
    ("why", "row", "replicas", "needs_pass"),
    [
        ("converged and true", record(), BOTH, False),
        ("a replica missing", record(), BOTH[:1], True),
        ("a replica stopped", record(), [replica(0), replica(1, state=RunState.EXITED)], True),
        ("a stale replica", record(), [replica(0), replica(1, "old")], True),
        ("status counts another number", record(ready_replicas=1), BOTH, True),
        ("a newer generation", record(generation=3), BOTH, True),
        ("a moving phase", record(phase=Phase.STARTING), BOTH, True),
        ("deleted, status left", record(present=False, spec=None), [], True),
        (
            "failed and backing off",
            record(
                phase=Phase.FAILED,
                failure_kind="transient",
                attempts=1,
                next_attempt_at=NOW + timedelta(seconds=30),
            ),
            [],
            False,
        ),
        ("a replica runs on another node now", record(), [replica(0), replica(1, node="n2")], True),
        ("a row that no longer parses", record(spec={"name": "web", "image": ""}), BOTH, True),
    ],
)
def test_which_deployments_need_a_pass(
    why: str, row: DeploymentRecord, replicas: list[ObservedReplica], needs_pass: bool
) -> None:
    found = survey([row], {"web": replicas} if replicas else {}, "default", NOW)
    assert ("web" in found.dirty) is needs_pass, why


def test_a_stuck_deployment_needs_a_pass_and_is_counted() -> None:
    found = survey([record()], {"web": BOTH}, "default", NOW, stuck={"web"})
    assert found.dirty == {"web"} and found.fleet.stuck == 1


def test_orphans_of_deleted_deployments_need_a_pass() -> None:
    orphan = ObservedReplica("o", "berth-gone-0", "gone", 0, "h")
    assert "gone" in survey([record()], {"web": BOTH, "gone": [orphan]}, "default", NOW).dirty


def test_a_source_deployment_is_judged_by_its_status() -> None:
    sourced = {"name": "web", "source": {"archive": {"sha256": "a" * 64}}, "replicas": 2}
    built = [replica(0, "built"), replica(1, "built")]  # the built image's hash
    seen = record(spec=sourced, observed_replicas=replica_rows(built))
    assert survey([seen], {"web": built}, "default", NOW).dirty == set()
    assert survey([record(spec=sourced)], {"web": built[:1]}, "default", NOW).dirty == {"web"}


def test_the_fleet_gauges() -> None:
    found = survey([record()], {"web": BOTH[:1]}, "default", NOW)
    assert (found.fleet.replicas_desired, found.fleet.replicas_ready) == (2, 1)
    assert found.fleet.phases[Phase.ACTIVE] == 1


@given(
    phase=st.sampled_from(Phase),
    observed=st.integers(0, 3),
    generation=st.integers(0, 3),
)
def test_converged_is_active_at_this_generation_and_settled_includes_it(
    phase: Phase, observed: int, generation: int
) -> None:
    assert converged(phase, observed, generation) == (
        phase == Phase.ACTIVE and observed == generation
    )
    if converged(phase, observed, generation):
        assert settled(phase, observed, generation)
    assert settled(phase, observed, generation) == (
        phase in SETTLED_PHASES and observed == generation
    )
