"""What the loop remembers of the Docker engine itself: when it was last lost and back.

Written by the Docker watcher (`controller.loop.watchers.watch_docker`), which sees the
events stream end when the engine stops and reconnect when it answers again; read by the
restart gate (`controller.loop.restarts`), so replicas that the engine stopped while it
went down are started again without counting as crashes. Kept in memory: a leader elected
after the restart did not see it, and counts such exits as any other (documented).
"""

from __future__ import annotations

import threading

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
