"""A work queue of deployment names, after client-go's: deduplicating, one in flight per key.

Called by the watchers (`add`, `add_after`) and by the controller loop
(`controller.loop.controller`: its workers `get` and `done`, and it requeues each pass's
outcome with `add_after`). The reconciler never touches it.

Guarantees:
- a key waiting in the queue is queued once, however often it is added;
- a key is handed to one worker at a time; added while in flight, it is handed out again
  after `done`, so no change is lost and no deployment is reconciled twice at once;
- a key added with a delay becomes ready at that time (the earliest of its delays wins
  over later ones only by being handed out first; each hand-out sees the latest state).
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
        self._delayed: list[tuple[float, int, str]] = []
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

    def add_after(self, key: str, delay_s: float) -> None:
        if delay_s <= 0:
            self.add(key)
            return
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._delayed, (self._clock() + delay_s, next(self._sequence), key))
            self._cond.notify()

    def get(self, timeout_s: float | None = None) -> str | None:
        """The next key to work on, or None once shut down (or after `timeout_s`)."""
        deadline = None if timeout_s is None else self._clock() + timeout_s
        with self._cond:
            while True:
                now = self._clock()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, key = heapq.heappop(self._delayed)
                    self._add_locked(key)
                if self._order:
                    key = self._order.popleft()
                    self._waiting.discard(key)
                    self._in_flight.add(key)
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
            due = sum(1 for at, _, _ in self._delayed if at <= horizon)
            return len(self._in_flight) + len(self._order) + due

    def pending(self) -> int:
        with self._cond:
            return len(self._order) + len(self._delayed)

    def in_flight(self) -> int:
        with self._cond:
            return len(self._in_flight)
