"""The pass's pure decisions (controller.policy.settle and .backoff): tables and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.model.phases import Phase
from controller.model.records import DeploymentRecord
from controller.policy import settle
from controller.policy.backoff import backoff_s

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def record(**changes: Any) -> DeploymentRecord:
    values: dict[str, Any] = {
        "name": "web",
        "present": True,
        "spec": {"name": "web", "image": "x"},
        "generation": 2,
        "phase": Phase.HEALTH_CHECK,
        "phase_updated_at": NOW - timedelta(seconds=10),
        "observed_generation": 2,
        "ready_replicas": 0,
        "failure_kind": None,
        "attempts": 0,
        "next_attempt_at": None,
    }
    return DeploymentRecord(**(values | changes))


def decide(ready: int, desired: int = 2, **kwargs: Any) -> settle.Settlement:
    arguments: dict[str, Any] = {
        "current_phase": Phase.HEALTH_CHECK,
        "recorded": record(),
        "changed": False,
        "restart_waits_s": [],
        "now": NOW,
        "health_deadline_s": 60.0,
        "health_poll_s": 2.0,
    }
    return settle.settle(ready=ready, desired=desired, **(arguments | kwargs))


@pytest.mark.parametrize(
    ("ready", "kwargs", "expected"),
    [
        # every replica ready: active; written only if something changed
        (2, {}, settle.Settlement(Phase.ACTIVE, True)),
        (
            2,
            {"recorded": record(phase=Phase.ACTIVE, ready_replicas=2)},
            settle.Settlement(Phase.ACTIVE, False),
        ),
        (
            2,
            {"recorded": record(phase=Phase.ACTIVE, ready_replicas=2), "changed": True},
            settle.Settlement(Phase.ACTIVE, True),
        ),
        (
            3,
            {"recorded": record(phase=Phase.ACTIVE, ready_replicas=1)},
            settle.Settlement(Phase.ACTIVE, True),
        ),
        # replicas waiting out a restart backoff: degraded, looked at when the first is due
        (1, {"restart_waits_s": [20.0, 10.0]}, settle.Settlement(Phase.DEGRADED, True, 10.0)),
        # coming up: health_check, polled
        (1, {}, settle.Settlement(Phase.HEALTH_CHECK, True, 2.0)),
        (0, {"current_phase": Phase.STARTING}, settle.Settlement(Phase.HEALTH_CHECK, True, 2.0)),
        # past the deadline in health_check: failed
        (
            1,
            {"recorded": record(phase_updated_at=NOW - timedelta(seconds=61))},
            settle.Settlement(Phase.FAILED, True, None, 61.0),
        ),
        # the deadline counts only in health_check (this pass just started the replicas)
        (
            1,
            {
                "recorded": record(phase_updated_at=NOW - timedelta(seconds=61)),
                "current_phase": Phase.STARTING,
            },
            settle.Settlement(Phase.HEALTH_CHECK, True, 2.0),
        ),
    ],
)
def test_settle_table(ready: int, kwargs: dict[str, Any], expected: settle.Settlement) -> None:
    assert decide(ready, **kwargs) == expected


@given(
    ready=st.integers(0, 10),
    desired=st.integers(0, 10),
    waits=st.lists(st.floats(0.1, 300), max_size=3),
    waited=st.floats(0, 1000),
)
def test_settle_properties(ready: int, desired: int, waits: list[float], waited: float) -> None:
    decision = decide(
        ready,
        desired,
        restart_waits_s=waits,
        recorded=record(phase_updated_at=NOW - timedelta(seconds=waited)),
    )
    assert (decision.phase == Phase.ACTIVE) == (ready >= desired)
    if decision.phase != Phase.ACTIVE:
        assert decision.write
        assert (decision.phase == Phase.FAILED) == (decision.deadline_exceeded_after_s is not None)
        if decision.phase != Phase.FAILED:
            assert decision.requeue_after is not None and decision.requeue_after > 0


def test_failures() -> None:
    retry = settle.RetryPolicy(base_s=1.0, max_s=8.0)
    transient = settle.fail("boom", False, 2, NOW, retry)
    assert (transient.kind, transient.attempts, transient.retry_after_s) == ("transient", 3, 4.0)
    assert transient.next_attempt_at == NOW + timedelta(seconds=4)
    assert transient.message == "boom (attempt 3; retrying in 4s)"
    permanent = settle.fail("bad", True, 0, NOW, retry)
    assert (permanent.kind, permanent.retry_after_s, permanent.next_attempt_at) == (
        "permanent",
        600.0,
        NOW + timedelta(seconds=600),
    )
    assert permanent.message == (
        "bad (caused by the spec: retried when it changes, when the Docker engine comes back,"
        " or at 12:10:00Z)"
    )


@pytest.mark.parametrize(
    ("changes", "held"),
    [
        # a permanent failure waits for its slow retry...
        ({"failure_kind": "permanent", "next_attempt_at": NOW + timedelta(seconds=600)}, 600.0),
        ({"failure_kind": "permanent", "next_attempt_at": NOW - timedelta(seconds=1)}, None),
        # ...unless the spec changed (a new generation)
        (
            {
                "failure_kind": "permanent",
                "next_attempt_at": NOW + timedelta(seconds=9),
                "generation": 3,
            },
            None,
        ),
        ({"failure_kind": "transient", "next_attempt_at": NOW + timedelta(seconds=5)}, 5.0),
        ({"failure_kind": "transient", "next_attempt_at": NOW - timedelta(seconds=1)}, None),
        (
            {
                "failure_kind": "transient",
                "next_attempt_at": NOW + timedelta(seconds=5),
                "generation": 3,
            },
            None,
        ),
        ({}, None),
    ],
)
def test_holds(changes: dict[str, Any], held: float | None) -> None:
    assert settle.held(record(**changes), NOW) == held


@pytest.mark.parametrize(
    ("phase", "age_s", "stuck"),
    [
        (Phase.CREATING, 601, 601.0),
        (Phase.CREATING, 599, None),
        (Phase.QUEUED, 600, 600.0),
        (Phase.HEALTH_CHECK, 10_000, None),  # has its own deadline
        (Phase.ACTIVE, 10_000, None),
        (Phase.FAILED, 10_000, None),
    ],
)
def test_stuck_only_in_moving_phases(phase: Phase, age_s: float, stuck: float | None) -> None:
    found = record(phase=phase, phase_updated_at=NOW - timedelta(seconds=age_s))
    assert settle.stuck_for(found, NOW, 600.0) == stuck


def test_stuck_message_names_another_term_and_the_count() -> None:
    found = record(phase=Phase.CREATING, leader_term=3, stuck_resumes=1)
    assert settle.stuck_message(found, 700, 4) == (
        "stuck in creating for 700s (written by term 3); resuming (time 2 of 3)"
    )
    assert not settle.stuck_too_often(found)
    assert settle.stuck_too_often(record(stuck_resumes=3))


def test_clock_time_is_absolute_utc() -> None:
    assert settle.clock_time(NOW + timedelta(seconds=64)) == "12:01:04Z"


@given(attempt=st.integers(1, 10_000), base=st.floats(0.01, 10), cap=st.floats(0.01, 600))
def test_backoff_doubles_and_is_capped(attempt: int, base: float, cap: float) -> None:
    delay = backoff_s(attempt, base, cap)
    assert 0 < delay <= cap
    assert delay == min(base * 2 ** min(attempt - 1, 30), cap)
    assert backoff_s(attempt + 1, base, cap) >= delay


def test_backoff_table() -> None:
    assert [backoff_s(n, 1, 8) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]


@pytest.mark.parametrize(
    ("interval_s", "announced", "waited_s", "look_again_s"),
    [
        (2.0, True, 0.0, 2.0),  # one engine: its events wake the loop, the interval is a backstop
        (2.0, True, 60.0, 2.0),
        (2.0, False, 0.0, 0.25),  # a swarm: no events, look soon at first
        (2.0, False, 1.0, 0.25),
        (2.0, False, 4.0, 1.0),  # a quarter of the wait so far
        (2.0, False, 60.0, 2.0),  # never past the interval
        (0.1, False, 0.0, 0.1),
    ],
)
def test_without_events_a_replica_coming_up_is_looked_at_sooner(
    interval_s: float, announced: bool, waited_s: float, look_again_s: float
) -> None:
    assert settle.health_poll_s(interval_s, announced, waited_s) == look_again_s


@given(st.floats(0.01, 60), st.booleans(), st.floats(0, 3600))
def test_looking_again_is_never_later_than_the_interval(
    interval_s: float, announced: bool, waited_s: float
) -> None:
    assert 0 < settle.health_poll_s(interval_s, announced, waited_s) <= interval_s
