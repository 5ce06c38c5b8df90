"""Leadership on a fake election session: elected, fenced, deposed, trust lapsing.

The real protocol against Postgres (advisory lock, term claims, SIGKILL and pauses) is in
tests/integration/test_leadership.py; here are the decisions of `Leadership` itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from controller.loop.leadership import Leadership
from controller.model.errors import DatabaseUnavailable, Deposed
from controller.model.records import Claim


class FakeSession:
    """The lock is always free; the term row is `self.row`, which a test may take over."""

    def __init__(self, term: int = 7) -> None:
        self.term = term
        self.row: tuple[int, str] | None = None
        self.heartbeat_error: Exception | None = None
        self.hold = threading.Event()  # set: the next heartbeat hangs until `release`
        self.held = threading.Event()
        self.release = threading.Event()
        self.heartbeats = 0
        self.claims = 0
        self.closed = False
        self.claim_takes_s = 0.0
        self.clock: Clock | None = None
        self.previous_beat_age_s: float | None = None
        self.predecessor_sessions = 0
        self.session_checks = 0

    def acquire(self, key: int) -> None:
        pass

    def claim_term(self, cluster: str, node_id: str, host: str, pid: int) -> Claim:
        self.claims += 1
        if self.claim_takes_s and self.clock is not None:
            self.clock.now += self.claim_takes_s  # waited for the old term's transactions
        previous = self.row[1] if self.row and self.row[1] != node_id else None
        self.row = (self.term, node_id)
        return Claim(self.term, previous, self.previous_beat_age_s)

    def limit_statements(self, timeout_s: float) -> None:
        pass

    def node_sessions(self, cluster: str, node_id: str) -> int:
        self.session_checks += 1
        return self.predecessor_sessions

    def heartbeat(self, cluster: str, term: int, node_id: str) -> tuple[int, str] | None:
        self.heartbeats += 1
        if self.hold.is_set():
            self.held.set()
            self.release.wait(5)
        if self.heartbeat_error is not None:
            raise self.heartbeat_error
        return self.row

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    done = threading.Event()
    deadline = threading.Timer(timeout_s, done.set)
    deadline.start()
    try:
        while not predicate():
            if done.wait(0.005):
                raise AssertionError("condition not reached")
    finally:
        deadline.cancel()


@pytest.fixture
def session() -> FakeSession:
    return FakeSession()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def running(session: FakeSession, clock: Clock) -> Iterator[tuple[Leadership, list[str]]]:
    calls: list[str] = []
    leadership = Leadership(
        "postgresql://unused",
        "unit",
        heartbeat_interval_s=0.01,
        trust_window_s=2.0,
        silence_timeout_s=4.0,
        on_elected=lambda term: calls.append(f"elected {term}"),
        on_deposed=lambda term: calls.append(f"deposed {term}"),
        monotonic=clock,
        connect=lambda url, name, silence: session,
    )
    stopping = threading.Event()
    thread = threading.Thread(target=leadership.run, args=(stopping,), daemon=True)
    thread.start()
    # The term is set before `on_elected` runs: wait for the callback, not only the term.
    wait_until(lambda: leadership.term is not None and bool(calls))
    yield leadership, calls
    stopping.set()
    leadership.stop()
    thread.join(5)


def test_elected_leader_hands_out_fences_of_its_term(
    running: tuple[Leadership, list[str]],
) -> None:
    leadership, calls = running
    fence = leadership.fence()
    assert fence.term == 7
    fence.check_trust()
    assert calls == ["elected 7"]
    assert leadership.is_leader


def test_a_lapsed_trust_window_fences_everything_before_step_down(
    running: tuple[Leadership, list[str]], session: FakeSession, clock: Clock
) -> None:
    leadership, _ = running
    fence = leadership.fence()
    session.hold.set()  # the heartbeat hangs (a slow network, a paused process)
    assert session.held.wait(5)
    clock.now += 2.5  # ...for longer than the trust window
    with pytest.raises(Deposed, match="trust window of term 7 lapsed"):
        fence.check_trust()
    with pytest.raises(Deposed, match="not the leader"):
        leadership.fence()
    session.hold.clear()
    session.release.set()


def test_a_term_taken_over_deposes(
    running: tuple[Leadership, list[str]], session: FakeSession
) -> None:
    leadership, calls = running
    fence = leadership.fence()
    session.term = 8
    session.row = (8, "someone-else")
    wait_until(lambda: "deposed 7" in calls)
    with pytest.raises(Deposed):
        fence.check_trust()
    assert session.closed, "the session (and its lock) is given up"


def test_a_failed_heartbeat_deposes(
    running: tuple[Leadership, list[str]], session: FakeSession
) -> None:
    leadership, calls = running
    fence = leadership.fence()
    session.heartbeat_error = DatabaseUnavailable("connection lost")
    wait_until(lambda: "deposed 7" in calls)
    session.term = 8  # Postgres is back: the next claim is a new term
    session.heartbeat_error = None
    wait_until(lambda: leadership.term == 8)
    with pytest.raises(Deposed, match="term 7 ended"):
        fence.check_trust()
    assert session.claims >= 2


def test_a_slow_claim_is_trusted_at_once_by_an_immediate_heartbeat(clock: Clock) -> None:
    session = FakeSession()
    session.clock, session.claim_takes_s = clock, 3.0  # longer than the 2 s trust window
    fences: list[int] = []
    leadership = Leadership(
        "postgresql://unused",
        "unit",
        heartbeat_interval_s=60.0,  # no periodic heartbeat within this test
        trust_window_s=2.0,
        silence_timeout_s=4.0,
        on_elected=lambda term: fences.append(leadership.fence().term),
        monotonic=clock,
        connect=lambda url, name, silence: session,
    )
    stopping = threading.Event()
    thread = threading.Thread(target=leadership.run, args=(stopping,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: bool(fences))
        assert fences == [7], "trusted when elected, not one heartbeat interval later"
        assert session.heartbeats == 1
    finally:
        stopping.set()
        leadership.stop()
        thread.join(5)


def run_until_elected(session: FakeSession, clock: Clock) -> tuple[Leadership, threading.Event]:
    leadership = Leadership(
        "postgresql://unused",
        "unit",
        heartbeat_interval_s=60.0,
        trust_window_s=2.0,
        silence_timeout_s=4.0,
        monotonic=clock,
        connect=lambda url, name, silence: session,
    )
    stopping = threading.Event()
    threading.Thread(target=leadership.run, args=(stopping,), daemon=True).start()
    return leadership, stopping


def test_a_dead_predecessor_costs_no_wait(clock: Clock) -> None:
    session = FakeSession()
    session.row = (6, "old-node")
    session.previous_beat_age_s = 0.1  # it beat just before it died
    session.predecessor_sessions = 0  # ...and none of its sessions is left
    leadership, stopping = run_until_elected(session, clock)
    try:
        wait_until(lambda: leadership.term == 7)
        assert session.session_checks == 1
    finally:
        stopping.set()
        leadership.stop()


def test_a_live_predecessor_is_waited_out_for_its_trust_window(clock: Clock) -> None:
    session = FakeSession()
    session.row = (6, "old-node")
    session.previous_beat_age_s = 0.5  # it may trust itself for 1.5 s more
    session.predecessor_sessions = 2  # its pool is still connected: it may still act
    leadership, stopping = run_until_elected(session, clock)
    try:
        wait_until(lambda: session.session_checks >= 3)
        assert leadership.term is None, "not leading while the predecessor may act"
        clock.now += 1.5
        wait_until(lambda: leadership.term == 7)
    finally:
        stopping.set()
        leadership.stop()


def test_a_replica_that_may_not_lead_never_stands_and_says_why(clock: Clock) -> None:
    """One data plane per cluster: while `eligible` gives a reason, no lock is even asked
    for; once it gives none, the replica stands and is elected."""
    session = FakeSession()
    connects: list[str] = []
    reason: list[str | None] = ["the cluster runs on another engine"]

    def connect(url: str, name: str, silence: float) -> FakeSession:
        connects.append(name)
        return session

    leadership = Leadership(
        "postgresql://unused",
        "unit",
        heartbeat_interval_s=0.01,
        trust_window_s=2.0,
        silence_timeout_s=4.0,
        monotonic=clock,
        connect=connect,
        eligible=lambda: reason[0],
    )
    stopping = threading.Event()
    thread = threading.Thread(target=leadership.run, args=(stopping,), daemon=True)
    thread.start()
    wait_until(lambda: leadership.refused == "the cluster runs on another engine")
    assert connects == [] and session.claims == 0 and leadership.term is None
    reason[0] = None
    wait_until(lambda: leadership.term == 7, timeout_s=10)
    assert leadership.refused is None
    stopping.set()
    leadership.stop()
    thread.join(5)
