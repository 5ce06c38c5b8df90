"""Leader election: one replica per cluster acts; the others stand by.

Started by the daemon in its own thread (`Leadership.run`); asked by the reconciler and
the resync for a `Fence` before each pass, and (through the fence) by the status writer
before each write and mutation.

Protocol (the timing argument is in RECONCILIATION.md, "Leadership and fencing"):
1. Open a `LockSession` (dedicated connection) and block in `pg_advisory_lock(key)`,
   key = first 8 bytes of sha256("berth.leader.<cluster>") as a signed 64-bit integer.
2. Holding the lock, claim a new term in `berth_leader` (waits for the previous leader's
   in-flight fenced transactions to end).
3. Trust leadership until `t + trust_window` where `t` is the monotonic time just before
   the last successful heartbeat was *sent*. Heartbeat every `heartbeat_interval`.
4. A failed heartbeat, a changed term, or a lapsed window ends the term: stop acting, close
   the session (releasing the lock if Postgres still holds it) and queue up as a follower.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

import structlog

from controller.loop.ports import ElectionSession
from controller.model.errors import BerthError, Deposed
from controller.model.names import advisory_key
from controller.model.records import Claim, Fence
from controller.policy.backoff import backoff_s

log = structlog.get_logger("berth.leadership")


RECONNECT_MAX_S = 1.0
PREDECESSOR_POLL_S = 0.02
# A replica that may not lead (`eligible`) looks again this often: a fixed claim is seen soon.
INELIGIBLE_RETRY_S = 2.0


def leader_lock_name(cluster: str) -> str:
    return f"berth.leader.{cluster}"


class Leadership:
    def __init__(
        self,
        database_url: str,
        cluster: str,
        heartbeat_interval_s: float,
        trust_window_s: float,
        silence_timeout_s: float,
        *,
        connect: Callable[[str, str, float], ElectionSession],
        eligible: Callable[[], str | None] = lambda: None,
        on_elected: Callable[[int], None] = lambda term: None,
        on_deposed: Callable[[int], None] = lambda term: None,
        monotonic: Callable[[], float] = time.monotonic,
        node_id: str | None = None,
    ) -> None:
        self.database_url = database_url
        self._connect = connect
        self._eligible = eligible
        self.refused: str | None = None  # why this replica may not lead now, if it may not
        self.cluster = cluster
        self.heartbeat_interval_s = heartbeat_interval_s
        self.trust_window_s = trust_window_s
        self.silence_timeout_s = silence_timeout_s
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self._monotonic = monotonic
        self.node_id = node_id or str(uuid.uuid4())
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.key = advisory_key(leader_lock_name(cluster))
        self._lock = threading.Lock()
        self._term: int | None = None
        self._trusted_until = 0.0
        self._session: ElectionSession | None = None
        self.elections = 0

    # --- asked by others ------------------------------------------------------------------
    @property
    def term(self) -> int | None:
        with self._lock:
            return self._term

    @property
    def is_leader(self) -> bool:
        with self._lock:
            return self._term is not None and self._monotonic() < self._trusted_until

    def fence(self) -> Fence:
        """Proof of leadership for the current term, or Deposed."""
        with self._lock:
            term = self._term
            if term is None or self._monotonic() >= self._trusted_until:
                raise Deposed("not the leader")

        def check_trust() -> None:
            with self._lock:
                if self._term != term:
                    raise Deposed(f"term {term} ended")
                if self._monotonic() >= self._trusted_until:
                    raise Deposed(f"trust window of term {term} lapsed")

        return Fence(self.cluster, term, self.node_id, check_trust)

    # --- the election loop ----------------------------------------------------------------
    def run(self, stopping: threading.Event) -> None:
        attempt = 0
        while not stopping.is_set():
            if not self._may_lead():
                stopping.wait(INELIGIBLE_RETRY_S)
                continue
            session: ElectionSession | None = None
            try:
                session = self._connect(
                    self.database_url,
                    f"berth-lock {self.cluster} {self.node_id}",
                    self.silence_timeout_s,
                )
                with self._lock:
                    self._session = session
                if stopping.is_set():
                    return
                log.info("standing by for leadership", node=self.node_id)
                session.acquire(self.key)
                if stopping.is_set():
                    return
                if not self._may_lead():  # checked again: it may have waited long for the lock
                    continue
                sent = self._monotonic()
                claim = session.claim_term(self.cluster, self.node_id, self.host, self.pid)
                session.limit_statements(self.trust_window_s / 2)
                attempt = 0
                self._await_predecessor(session, claim, stopping)
                self._lead(session, claim.term, sent, stopping)
            except BerthError as error:
                if stopping.is_set():
                    return
                attempt += 1
                log.warning("leadership session lost", error=str(error), attempt=attempt)
            finally:
                self._step_down()
                with self._lock:
                    self._session = None
                if session is not None:
                    session.close()
            # Reconnect soon: a leader is wanted within 2 s of Postgres answering again.
            stopping.wait(backoff_s(attempt + 1, 0.1, RECONNECT_MAX_S) if attempt else 0.05)

    def _may_lead(self) -> bool:
        """Whether this replica may stand for election (one data plane per cluster)."""
        self.refused = self._eligible()
        return self.refused is None

    def _lead(
        self, session: ElectionSession, term: int, sent: float, stopping: threading.Event
    ) -> None:
        with self._lock:
            self._term = term
            self._trusted_until = sent + self.trust_window_s
            self.elections += 1
        # A claim that waited (for the old term's transactions) longer than the window gets a
        # heartbeat now, rather than one interval later, so the new leader acts at once.
        lapsed = self._monotonic() >= sent + self.trust_window_s
        if lapsed and not self._heartbeat(session, term):
            return
        log.info("elected leader", term=term, node=self.node_id)
        self.on_elected(term)
        while not stopping.wait(self.heartbeat_interval_s):
            if not self._heartbeat(session, term):
                return

    def _await_predecessor(
        self, session: ElectionSession, claim: Claim, stopping: threading.Event
    ) -> None:
        """Act only once the previous leader cannot: its process is gone (no session left),
        or its trust window, counted from its last heartbeat, has lapsed. A leader killed
        or frozen costs nothing here (no session, or a window long over); one whose lock
        session alone was cut (an administrator, a network path) up to the window."""
        previous = claim.previous_holder
        if previous is None:
            return
        age = claim.previous_beat_age_s
        wait_s = self.trust_window_s - age if age is not None else self.trust_window_s
        deadline = self._monotonic() + max(0.0, wait_s)
        while self._monotonic() < deadline and not stopping.is_set():
            if session.node_sessions(self.cluster, previous) == 0:
                return
            stopping.wait(PREDECESSOR_POLL_S)
        if wait_s > 0:
            log.info("waited out the previous leader's trust window", waited_s=round(wait_s, 3))

    def _heartbeat(self, session: ElectionSession, term: int) -> bool:
        """Renew trust from a written heartbeat; False when the term is over."""
        sent = self._monotonic()
        current = session.heartbeat(self.cluster, term, self.node_id)
        if current != (term, self.node_id):
            log.warning("term taken over", term=term, now=current)
            return False
        with self._lock:
            self._trusted_until = sent + self.trust_window_s
        if self._monotonic() >= sent + self.trust_window_s:
            log.warning("heartbeat slower than the trust window", term=term)
            return False
        return True

    def _step_down(self) -> None:
        with self._lock:
            term, self._term, self._trusted_until = self._term, None, 0.0
        if term is not None:
            log.warning("stepped down", term=term, node=self.node_id)
            self.on_deposed(term)

    def stop(self) -> None:
        """Wake a follower blocked on the lock; the loop sees `stopping` and ends."""
        with self._lock:
            session = self._session
        if session is not None:
            session.cancel()
