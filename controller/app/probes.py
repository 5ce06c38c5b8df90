"""The HTTP probes' answers, within a second whatever Postgres and Docker do.

Called by the daemon's HTTP endpoint (`controller.app.http_server`) through the daemon.
`ready` runs its checks (Postgres's ping, refused on a server that takes no writes, and a
Docker ping, neither retried) in a small pool
of threads and answers 503 with the reason when a check fails or does not answer within
`READY_DEADLINE_S`. `status` never queries inline: the daemon's reporter thread refreshes
a snapshot every couple of seconds (`refresh`), and `/status` serves the last one with its
age and the last refresh error, so it answers at once even while Postgres is down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from controller.model.errors import BerthError

READY_DEADLINE_S = 0.8
Check = Callable[[], object]


class Probes:
    def __init__(
        self,
        checks: dict[str, Check],
        snapshot: Callable[[], dict[str, Any]],
        local: Callable[[], dict[str, Any]],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._checks = checks
        self._snapshot = snapshot
        self._local = local
        self._monotonic = monotonic
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="probe")
        self._lock = threading.Lock()
        self._last: dict[str, Any] | None = None
        self._last_at: float | None = None
        self._last_error: str | None = None

    def ready(self) -> tuple[bool, str]:
        """(ready, reason): every dependency answered within the deadline."""
        futures = {name: self._pool.submit(check) for name, check in self._checks.items()}
        deadline = self._monotonic() + READY_DEADLINE_S
        for name, future in futures.items():
            try:
                future.result(timeout=max(0.0, deadline - self._monotonic()))
            except FutureTimeout:
                return False, f"{name}: no answer within {READY_DEADLINE_S:g}s"
            except BerthError as error:
                return False, f"{name}: {error}"
        return True, "ok"

    def refresh(self) -> None:
        """Take a new snapshot of the cluster's state (the reporter thread calls this)."""
        try:
            snapshot = self._snapshot()
        except BerthError as error:
            with self._lock:
                self._last_error = str(error)
            return
        with self._lock:
            self._last, self._last_at, self._last_error = snapshot, self._monotonic(), None

    def status(self) -> dict[str, Any]:
        """This process's own state now, plus the last snapshot of the cluster's, aged."""
        with self._lock:
            last, at, error = self._last, self._last_at, self._last_error
        return {
            **self._local(),
            **(last or {}),
            "snapshot_age_s": None if at is None else round(self._monotonic() - at, 3),
            "snapshot_error": error,
        }

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
