"""A work queue of deployment names, after client-go's: deduplicating, one in flight per key.

Called by the watchers (`add`, `add_after`) and by the controller loop
(`controller.loop.controller`: its workers `get` and `done`, and it requeues each pass's
outcome with `add_after`). The reconciler never touches it.

Guarantees:
- a key waiting in the queue is queued once, however often it is added;
- a key is handed to one worker at a time; added while in flight, it is handed out again
  after `done`, so no change is lost and no deployment is reconciled twice at once;
- a key added with a delay becomes ready at that time (the earliest of its delays wins
  over later ones only by being handed out first; each hand-out sees the latest state);
- except a pass's own requeue (`until_next_pass`, the controller's): it is dropped once a
  later pass of the key begins, since that pass returns its own requeue from a newer look.
  Without this, every pass of a deployment that waits (stopping replicas, a health check)
  left its requeue behind when an event brought the next pass early, and each fired as a
  pass of its own: 215 passes in the 8 s after a teardown of 50 had ended, 4 per name.
  A watcher's delayed look (an event's second look at a lagging list) is never dropped.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable


class WorkQueue:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._order: deque[str] = deque()
        self._waiting: set[str] = set()
        self._in_flight: set[str] = set()
        # (due, sequence, key, the key's hand-outs when a pass's requeue was asked for)
        self._delayed: list[tuple[float, int, str, int | None]] = []
        self._handouts: dict[str, int] = {}  # passes begun, by key
        self._sequence = itertools.count()
        self._closed = False

    def add(self, key: str) -> None:
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key: str) -> None:
        if self._closed or key in self._waiting:
            return
        self._waiting.add(key)
        if key not in self._in_flight:
            self._order.append(key)
            self._cond.notify()

    def add_after(self, key: str, delay_s: float, until_next_pass: bool = False) -> None:
        """`key` ready in `delay_s`; with `until_next_pass`, only if no later pass of it
        has begun by then (a pass's own requeue, superseded by the next pass's)."""
        if delay_s <= 0:
            self.add(key)
            return
        with self._cond:
            if self._closed:
                return
            stamp = self._handouts.get(key, 0) if until_next_pass else None
            heapq.heappush(
                self._delayed, (self._clock() + delay_s, next(self._sequence), key, stamp)
            )
            self._cond.notify()

    def _live(self, key: str, stamp: int | None) -> bool:
        """Whether a delayed entry still stands: not a requeue some later pass superseded."""
        return stamp is None or stamp == self._handouts.get(key, 0)

    def get(self, timeout_s: float | None = None) -> str | None:
        """The next key to work on, or None once shut down (or after `timeout_s`)."""
        deadline = None if timeout_s is None else self._clock() + timeout_s
        with self._cond:
            while True:
                now = self._clock()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, key, stamp = heapq.heappop(self._delayed)
                    if self._live(key, stamp):
                        self._add_locked(key)
                if self._order:
                    key = self._order.popleft()
                    self._waiting.discard(key)
                    self._in_flight.add(key)
                    self._handouts[key] = self._handouts.get(key, 0) + 1
                    return key
                if self._closed:
                    return None
                wait = None
                if self._delayed:
                    wait = self._delayed[0][0] - now
                if deadline is not None:
                    remaining = deadline - now
                    if remaining <= 0:
                        return None
                    wait = remaining if wait is None else min(wait, remaining)
                self._cond.wait(wait)

    def done(self, key: str) -> None:
        with self._cond:
            self._in_flight.discard(key)
            if key in self._waiting:
                self._order.append(key)
                self._cond.notify()

    def shut_down(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def next_due(self) -> float | None:
        """When the earliest delayed key becomes ready (the queue's clock), or None."""
        with self._cond:
            return self._delayed[0][0] if self._delayed else None

    def busy(self, within_s: float = 0.0) -> int:
        """Keys in flight, ready, or due within `within_s`: zero when the queue is at rest
        (say, after a resync's passes), even with retries scheduled further ahead."""
        with self._cond:
            horizon = self._clock() + within_s
            due = sum(
                1 for at, _, key, stamp in self._delayed if at <= horizon and self._live(key, stamp)
            )
            return len(self._in_flight) + len(self._order) + due

    def pending(self) -> int:
        with self._cond:
            return len(self._order) + len(self._delayed)

    def in_flight(self) -> int:
        with self._cond:
            return len(self._in_flight)
