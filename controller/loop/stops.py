"""Background stops: a replica leaving for good is stopped off the pass, so that a process
waiting out its stop grace (many ignore SIGTERM) never holds a rollout, a scale-down or a
delete.

Called by the executor (`controller.loop.executor`) once a replica is out of the routes and
drained: it hands over the stop (the same fenced mutation as any call: intent, Docker call,
outcome and event, so a leader that dies mid-stop leaves an intent the next one resolves)
and the pass goes on. Until the stop ends the replica is `removing` to every pass and
resync (`mark`): neither ready nor serving, not counted against the rollout's surge, never
retired twice. When it ends, `on_done(deployment)` queues the deployment's next pass (a
deleted one's status row is dropped only once its containers are gone).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import structlog

from controller.model.errors import BerthError
from controller.model.replicas import ObservedReplica, RunState

log = structlog.get_logger("berth.stops")


class BackgroundStops:
    def __init__(
        self,
        on_done: Callable[[str], None],
        workers: int = 1,
        run: Callable[[Callable[[], None]], object] | None = None,
    ) -> None:
        """`run` hands a stop to one of `workers` threads by default (`stop_concurrency`:
        each mostly waits out a grace period; more wait their turn, still off the pass);
        tests may defer."""
        self._on_done = on_done
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="stop") if run is None else None
        self._run = run if run is not None else self._submit
        self._lock = threading.Condition()
        self._in_flight: dict[str, str] = {}  # replica id -> deployment
        self._running = 0  # bodies started and not ended

    def _submit(self, work: Callable[[], None]) -> object:
        assert self._pool is not None
        return self._pool.submit(work)

    def stopping(self, deployment: str | None = None) -> set[str]:
        with self._lock:
            return {r for r, d in self._in_flight.items() if deployment in (None, d)}

    def mark(self, replicas: Sequence[ObservedReplica]) -> list[ObservedReplica]:
        """`replicas` with those being stopped shown as `removing`."""
        stopping = self.stopping()
        if not stopping:
            return list(replicas)
        return [replace(r, state=RunState.REMOVING) if r.id in stopping else r for r in replicas]

    def stop(self, deployment: str, replica_id: str, work: Callable[[], None]) -> bool:
        """Run `work` (the fenced retire of `replica_id`) in the background; False if that
        replica is already being stopped."""
        with self._lock:
            if replica_id in self._in_flight:
                return False
            self._in_flight[replica_id] = deployment

        def body() -> None:
            with self._lock:
                self._running += 1
            try:
                work()
            except BerthError as error:  # deposed, the engine gone...: the next pass sees it
                log.warning("background stop failed", replica=replica_id[:12], error=str(error))
            except Exception:
                log.exception("background stop failed", replica=replica_id[:12])
            finally:
                with self._lock:
                    self._in_flight.pop(replica_id, None)
                    self._running -= 1
                    self._lock.notify_all()
                self._on_done(deployment)

        self._run(body)
        return True

    def close(self, timeout_s: float) -> None:
        """Start no more stops, and wait up to `timeout_s` for those running (each ends
        with its grace; the next leader resolves any that a crash or the deadline cut
        short, from its intent)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._lock.wait_for(lambda: self._running == 0, timeout=max(0.0, timeout_s))
