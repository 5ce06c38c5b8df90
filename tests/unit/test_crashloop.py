"""The per-replica restart policy (CrashLoopBackOff), with explicit times."""

from __future__ import annotations

import itertools

from controller.policy.crashloop import (
    ReplicaRestarts,
    RestartPolicy,
    decide,
    dump_states,
    load_states,
)

POLICY = RestartPolicy(initial_backoff_s=10, max_backoff_s=300, reset_after_s=600, recreate_after=3)


def restart_times(failures_at: list[float]) -> list[float]:
    """When each failure is actually restarted, if Berth retries as soon as it may."""
    state, done = ReplicaRestarts(), []
    for failed_at in failures_at:
        decision = decide(state, failed_at, POLICY, "exited")
        at = failed_at + decision.wait_s
        decision = decide(state, at, POLICY, "exited")
        assert decision.allowed
        state = decision.state
        done.append(at)
    return done


def test_the_first_restart_is_immediate_then_10s_doubling() -> None:
    # A container that dies the instant it starts.
    state, times, now = ReplicaRestarts(), [], 0.0
    for _ in range(8):
        decision = decide(state, now, POLICY, "exited", exit_code=3)
        if not decision.allowed:
            now += decision.wait_s
            decision = decide(state, now, POLICY, "exited", exit_code=3)
        state = decision.state
        times.append(now)
    gaps = [round(b - a) for a, b in itertools.pairwise(times)]
    assert gaps == [10, 20, 40, 80, 160, 300, 300]
    assert state.last_exit_code == 3 and state.restarts == 8


def test_a_waiting_replica_reports_when_it_will_restart() -> None:
    first = decide(ReplicaRestarts(), 100, POLICY, "unhealthy").state
    waiting = decide(first, 103, POLICY, "unhealthy")
    assert not waiting.allowed and waiting.wait_s == 7
    assert waiting.state.next_restart_at == 110 and waiting.state.restarts == 1


def test_ten_quiet_minutes_reset_the_count() -> None:
    state = ReplicaRestarts(restarts=6, last_restart_at=0)
    decision = decide(state, 600, POLICY, "exited")
    assert decision.allowed and decision.state.restarts == 1


def test_recreate_after_three_restarts_in_a_row() -> None:
    flags, state, now = [], ReplicaRestarts(), 0.0
    for _ in range(5):
        decision = decide(state, now, POLICY, "exited")
        now += decision.wait_s
        decision = decide(state, now, POLICY, "exited")
        flags.append(decision.recreate)
        state = decision.state
    assert flags == [False, False, False, True, True]


def test_states_round_trip_through_json() -> None:
    states = {
        1: ReplicaRestarts(restarts=2, last_restart_at=5.0, last_reason="exited", last_exit_code=1)
    }
    assert load_states(dump_states(states)) == states
    assert load_states(None) == {}


def test_restart_times_helper_agrees_with_the_backoff() -> None:
    assert restart_times([0, 0, 0]) == [0, 10, 30]
