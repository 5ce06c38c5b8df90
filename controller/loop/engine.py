"""What the loop remembers of the Docker engine itself: when it was last lost and back.

Written by the Docker watcher (`controller.loop.watchers.watch_docker`), which sees the
events stream end when the engine stops and reconnect when it answers again; read by the
restart gate (`controller.loop.restarts`), so replicas that the engine stopped while it
went down are started again without counting as crashes. Kept in memory: a leader elected
after the restart did not see it, and counts such exits as any other (documented).
At start the daemon logs the known faults of the engine's version (`warn_of_engine_faults`).
"""

from __future__ import annotations

import threading

import structlog

from controller.policy.engine_faults import engine_faults

log = structlog.get_logger("berth.engine")

# Docker stops containers on shutdown within its own timeout (15 s by default) of the
# events stream closing, so an exit this long before the loss still counts as the engine's.
SHUTDOWN_GRACE_S = 30.0


class EngineHistory:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lost_at: float | None = None
        self._back_at: float | None = None

    def lost(self, at: float) -> None:
        with self._lock:
            self._lost_at, self._back_at = at, None

    def back(self, at: float) -> None:
        with self._lock:
            if self._lost_at is not None:
                self._back_at = at

    def stopped_by_engine(self, finished_at: float | None) -> bool:
        """Whether a container that finished at `finished_at` (unix seconds) was stopped by
        the engine's last restart rather than by its own failure."""
        with self._lock:
            lost, back = self._lost_at, self._back_at
        if finished_at is None or lost is None:
            return False
        return lost - SHUTDOWN_GRACE_S <= finished_at <= (back if back is not None else finished_at)


def warn_of_engine_faults(version: str, stop_concurrency: int) -> None:
    """At start: a warning for each known fault of the engine's version
    (`controller.policy.engine_faults`)."""
    for warning in engine_faults(version, stop_concurrency):
        log.warning("known engine fault", engine_version=version, detail=warning)
