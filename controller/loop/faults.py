"""Fault injection for tests: kill this process at a named point, reproducibly.

Called by the executor at every phase boundary and after every Docker mutation. Armed by
`BERTH_CRASH_AT` (a Settings field) as `POINT` or `POINT#N` (the N-th time the point is
reached, default 1); the points are `before:<phase>` (just before a phase is recorded) and
`after:<action>` (just after Docker did `create`, `start`, `remove` or `image`, before
Berth recorded it). Unset, every call is a dictionary lookup and nothing else.
"""

from __future__ import annotations

import os
import signal
import threading

import structlog

log = structlog.get_logger("berth.faults")

_lock = threading.Lock()
_armed: tuple[str, int] | None = None
_seen: dict[str, int] = {}


def arm(spec: str | None) -> None:
    global _armed
    with _lock:
        _seen.clear()
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
        log.warning("fault injection: killing this process", point=point)
        os.kill(os.getpid(), signal.SIGKILL)
