"""The work queue: dedup, one in flight per key, delays (with a fake clock)."""

from __future__ import annotations

import threading

from controller.loop.workqueue import WorkQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_key_added_twice_is_handed_out_once() -> None:
    queue = WorkQueue()
    queue.add("a")
    queue.add("a")
    queue.add("b")
    assert [queue.get(0), queue.get(0), queue.get(0)] == ["a", "b", None]


def test_a_key_added_while_in_flight_comes_back_after_done() -> None:
    queue = WorkQueue()
    queue.add("a")
    assert queue.get(0) == "a"
    queue.add("a")
    assert queue.get(0) is None, "never two workers on one key"
    queue.done("a")
    assert queue.get(0) == "a"


def test_delayed_keys_wait_for_their_time() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    queue.add_after("later", 5)
    assert queue.get(0) is None
    clock.now = 5.0
    assert queue.get(0) == "later"


def test_shut_down_wakes_waiting_workers() -> None:
    queue = WorkQueue()
    results: list[str | None] = []
    worker = threading.Thread(target=lambda: results.append(queue.get()))
    worker.start()
    queue.shut_down()
    worker.join(5)
    assert results == [None]


def test_busy_counts_work_in_flight_ready_or_due_soon() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    assert queue.busy() == 0
    queue.add("now")
    queue.add_after("soon", 0.5)
    queue.add_after("later", 600)
    assert queue.busy(within_s=1.0) == 2
    assert queue.get(0) == "now"
    assert queue.busy(within_s=1.0) == 2, "in flight still counts"
    queue.done("now")
    assert queue.busy(within_s=1.0) == 1
    assert queue.busy(within_s=0.0) == 0


def test_a_pass_requeue_is_superseded_by_a_later_pass_and_a_watcher_look_is_not() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    queue.add("a")
    assert queue.get(0) == "a"  # pass 1 asks to look again in 5 s
    queue.add_after("a", 5, until_next_pass=True)
    queue.done("a")
    queue.add("a")  # an event brings pass 2 early
    queue.add_after("a", 0.5)  # and the watcher's second look
    assert queue.get(0) == "a"  # pass 2 asks for nothing more
    queue.done("a")
    clock.now = 0.5
    assert queue.get(0) == "a", "the watcher's look stands"
    queue.done("a")
    clock.now = 5.0
    assert queue.get(0) is None, "pass 1's requeue was superseded by pass 2"
    assert queue.busy() == 0


def test_a_pass_requeue_stands_when_no_later_pass_began() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    queue.add("a")
    assert queue.get(0) == "a"
    queue.add_after("a", 5, until_next_pass=True)
    queue.done("a")
    assert queue.busy(within_s=5) == 1
    clock.now = 5.0
    assert queue.get(0) == "a"
