"""Fault injection for tests: kill this process at a named point, reproducibly.

Called by the executor at every phase boundary and after every Docker mutation. Armed by
`BERTH_CRASH_AT` (a Settings field) as `POINT` or `POINT#N` (the N-th time the point is
reached, default 1); the points are `before:<phase>` (just before a phase is recorded) and
`after:<action>` (just after Docker did `create`, `start`, `remove` or `image`, before
Berth recorded it). Unset, every call is a dictionary lookup and nothing else. Unit tests
arm it with their own `crash` (raising instead of killing), so a crash is simulated in
process with the in-memory fakes.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger("berth.faults")

_lock = threading.Lock()
_armed: tuple[str, int] | None = None
_seen: dict[str, int] = {}


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


_crash: Callable[[], None] = _kill


def arm(spec: str | None, crash: Callable[[], None] = _kill) -> None:
    """Crash at `spec` (`POINT` or `POINT#N`); None disarms. `crash` defaults to SIGKILL."""
    global _armed, _crash
    with _lock:
        _seen.clear()
        _crash = crash
        if not spec:
            _armed = None
            return
        point, _, count = spec.partition("#")
        _armed = (point, int(count) if count else 1)


def crash_point(point: str) -> None:
    if _armed is None or _armed[0] != point:
        return
    with _lock:
        _seen[point] = _seen.get(point, 0) + 1
        hit = _seen[point] == _armed[1]
    if hit:
        log.warning("fault injection: crashing here", point=point)
        _crash()
