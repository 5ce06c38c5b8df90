"""The controller loop: the one owner of the work queue, requeueing and the pass metrics.

Started by the daemon (`controller.app.daemon`): `work()` runs in each worker thread,
`resync()` on the scheduler's interval and `request_resync()` when a watcher subscribes or
this replica is elected. Watchers add names to the queue. A worker takes a name, runs
one pass (`Reconciler.reconcile`), and acts on the returned `Outcome`: requeue after
`requeue_after` (unless another pass of it begins first, which decides anew), or wait for
the next event. Nothing else schedules a pass, so what
happens next to a deployment is decided in one place (controller-runtime's controller).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from controller.loop.reconciler import Reconciler
from controller.loop.resync import FullResync, Release
from controller.loop.workqueue import WorkQueue
from controller.model.errors import BerthError
from controller.model.outcome import Outcome, Result
from controller.observability.metrics import (
    QUEUE_DEPTH,
    RECONCILE_DURATION,
    RECONCILE_ERRORS,
    RECONCILE_PASSES,
)
from controller.policy.backoff import backoff_s

log = structlog.get_logger("berth.controller")
FENCED_RETRY_S = 0.5


class Controller:
    def __init__(
        self,
        reconciler: Reconciler,
        resync: FullResync,
        queue: WorkQueue,
        stopping: threading.Event,
        monotonic: Callable[[], float] = time.monotonic,
        elected: Callable[[], bool] = lambda: False,
    ) -> None:
        self.reconciler = reconciler
        self._elected = elected
        self.full_resync = resync
        self.queue = queue
        self.stopping = stopping
        self._monotonic = monotonic
        self.last_resync_ok: float | None = None
        self._resync_lock = threading.Lock()
        self._resync_again = threading.Event()
        self._release_lock = threading.Lock()
        self._release: Release | None = None  # holds the next full resync releases first

    # --- passes -------------------------------------------------------------------------------
    def work(self) -> None:
        """A worker thread: passes until the queue shuts down."""
        while True:
            name = self.queue.get()
            if name is None:
                return
            try:
                self.process(name)
            finally:
                self.queue.done(name)
                QUEUE_DEPTH.set(self.queue.pending())

    def process(self, name: str) -> Outcome:
        """One pass for `name`, then what its outcome asks for."""
        started = self._monotonic()
        outcome = self.reconciler.reconcile(name)
        RECONCILE_PASSES.labels(scope="deployment").inc()
        RECONCILE_DURATION.labels(scope="deployment").observe(self._monotonic() - started)
        if outcome.failed:
            RECONCILE_ERRORS.labels(kind=str(outcome.result)).inc()
        if outcome.requeue_after is not None:
            self.queue.add_after(name, outcome.requeue_after, until_next_pass=True)
        elif outcome.result == Result.DEPOSED and self._elected():
            # Elected but not (yet, or no longer) trusted: not dropped, looked at again soon;
            # on a follower the leader has it.
            log.info("fenced pass requeued", deployment=name, reason=outcome.message)
            self.queue.add_after(name, FENCED_RETRY_S, until_next_pass=True)
        return outcome

    # --- full resyncs -------------------------------------------------------------------------
    def resync(self) -> bool:
        """A full resync; a request arriving meanwhile makes it run again after, never
        alongside. False when it could not run as the leader (fenced, or an error)."""
        if not self._resync_lock.acquire(blocking=False):
            self._resync_again.set()
            return True  # the running one will run again
        done = False
        try:
            while not self.stopping.is_set():
                self._resync_again.clear()
                with self._release_lock:
                    release, self._release = self._release, None
                try:
                    names = self.full_resync.run(release)
                    done = names is not None
                    for name in sorted(names or ()):
                        self.queue.add(name)
                    if done:
                        self.last_resync_ok = self._monotonic()
                    elif release is not None:
                        self.release_holds_next(release)  # not run: keep it for the next
                except BerthError as error:
                    done = False
                    log.warning("full resync failed", error=str(error))
                    if release is not None:
                        self.release_holds_next(release)
                QUEUE_DEPTH.set(self.queue.pending())
                if not self._resync_again.is_set():
                    break
        finally:
            self._resync_lock.release()
        return done

    def resync_until_done(self, still_leader: Callable[[], bool]) -> None:
        """A new leader's first full resync, retried with backoff until it completes (or
        the term ends): a leader must not leave pending work for the periodic resync."""
        attempt = 0
        while not self.stopping.is_set() and still_leader():
            if self.resync():
                return
            attempt += 1
            self.stopping.wait(backoff_s(attempt, 0.1, 2.0))

    def start_leading(self, still_leader: Callable[[], bool]) -> None:
        """Called when this replica is elected: resume whatever older terms left half-done."""
        self.full_resync.elected()
        if not self.stopping.is_set():
            threading.Thread(
                target=self.resync_until_done,
                args=(still_leader,),
                name="resync-elected",
                daemon=True,
            ).start()

    def engine_returned(self) -> None:
        """The Docker engine answers again after a loss: retry every failed deployment now
        (a fault of the engine is no fault of theirs), then resync."""
        self.release_holds_next(Release.ALL)
        self.request_resync()

    def image_appeared(self, image: str) -> None:
        """An image was pulled, tagged, loaded or imported: a deployment failed for want of
        it is retried now rather than at its slow retry."""
        log.info("image appeared: retrying permanent failures", image=image)
        self.release_holds_next(Release.PERMANENT)
        self.request_resync()

    def release_holds_next(self, release: Release) -> None:
        """The next full resync first makes these failed deployments due (the widest
        release asked for since the last one wins)."""
        with self._release_lock:
            if self._release is None or release == Release.ALL:
                self._release = release

    def request_resync(self) -> None:
        """Run a full resync now (after a watcher subscribes); the interval carries on."""
        if not self.stopping.is_set():
            threading.Thread(target=self.resync, name="resync-now", daemon=True).start()
