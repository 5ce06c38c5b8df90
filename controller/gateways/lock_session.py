"""The Postgres sessions that must not be pooled: the leader-election lock and LISTEN.

`LockSession` is used by `controller.loop.leadership`; `listen` by the database watcher
(`controller.loop.watchers`). Each holds its own direct connection, because an advisory
lock and a LISTEN belong to a session. Their SQL is named in `sql/queries.sql`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import psycopg
from psycopg.rows import dict_row

from controller.gateways.postgres_sql import queries, translated
from controller.model.records import Claim


def listener(url: str) -> Callable[[str, float], Iterator[str | None]]:
    """`listen` bound to the database at `url`: what the loop's LISTEN followers are given
    (`controller.loop.ports.Listen`)."""

    def bound(channel_query: str, poll_s: float) -> Iterator[str | None]:
        return listen(url, poll_s=poll_s, query=channel_query)

    return bound


def listen(url: str, poll_s: float = 1.0, query: str = "listen") -> Iterator[str | None]:
    """Yield each NOTIFY payload on `berth_deployments` (or the channel of the named LISTEN
    `query`: `listen_stream`, `listen_webhooks`), and None every `poll_s` without one.

    Uses its own connection (LISTEN needs a session). Raises DatabaseUnavailable when the
    connection is lost; the caller reconnects and resyncs.
    """
    with (
        translated("listen", timed=False),
        psycopg.connect(url, autocommit=True, connect_timeout=5) as conn,
    ):
        conn.execute(queries()[query].encode())
        yield None  # listening: anything changed from now on will be notified
        while True:
            received = False
            for notify in conn.notifies(timeout=poll_s):
                received = True
                yield notify.payload
            if not received:
                yield None


class LockSession:
    """The leader-election session: a dedicated, direct connection, never pooled.

    Postgres drops it (releasing the advisory lock) when the process dies, when an admin
    terminates it, or when it stays silent for `silence_timeout_s`: idle_session_timeout
    covers a paused or cut-off client whose kernel still answers, TCP keepalives and
    tcp_user_timeout a vanished host.
    """

    def __init__(self, url: str, application_name: str, silence_timeout_s: float) -> None:
        silence_ms = str(int(silence_timeout_s * 1000))
        probe_s = str(max(1, int(silence_timeout_s / 4)))
        with translated("lock_connect"):
            self._conn = psycopg.connect(
                url,
                autocommit=True,
                connect_timeout=5,
                application_name=application_name,
                keepalives=1,
                keepalives_idle=probe_s,
                keepalives_interval=probe_s,
                keepalives_count=3,
                row_factory=dict_row,
            )
            for name, value in (
                ("idle_session_timeout", silence_ms),
                ("tcp_user_timeout", silence_ms),
                ("tcp_keepalives_idle", probe_s),
                ("tcp_keepalives_interval", probe_s),
                ("tcp_keepalives_count", "3"),
                ("statement_timeout", "0"),
            ):
                self._set(name, value)

    def _set(self, name: str, value: str) -> None:
        self._conn.execute(queries()["set_session_setting"], {"name": name, "value": value})

    def acquire(self, key: int) -> None:
        """Block until this session holds the advisory lock (or `cancel` is called)."""
        with translated("lock_acquire", timed=False):  # waiting is the point, not latency
            self._conn.execute(queries()["advisory_lock"], {"key": key})

    def claim_term(self, cluster: str, node_id: str, host: str, pid: int) -> Claim:
        """Start a new term (waiting for the previous leader's in-flight fenced transactions
        and heartbeat), then read how long ago that leader last heartbeat."""
        params = {"cluster": cluster, "node_id": node_id, "host": host, "pid": pid}
        with translated("claim_term"):
            row = self._conn.execute(queries()["claim_term"], params).fetchone()
            assert row is not None
            term = int(row["term"])
            beat = self._conn.execute(
                queries()["previous_beat_age"], {"cluster": cluster, "term": term}
            ).fetchone()
        previous = row["previous_holder"]
        return Claim(
            term,
            previous_holder=str(previous) if previous and previous != node_id else None,
            previous_beat_age_s=float(beat["age_s"]) if beat else None,
        )

    def limit_statements(self, timeout_s: float) -> None:
        with translated("lock_connect"):
            self._set("statement_timeout", str(int(timeout_s * 1000)))

    def heartbeat(self, cluster: str, term: int, node_id: str) -> tuple[int, str] | None:
        """Record a heartbeat of `term` and return (term, holder id) as Postgres has it now."""
        params = {"cluster": cluster, "term": term, "node_id": node_id}
        with translated("heartbeat"):
            row = self._conn.execute(queries()["heartbeat"], params).fetchone()
        return (int(row["term"]), str(row["holder_id"])) if row else None

    def node_sessions(self, cluster: str, node_id: str) -> int:
        """Sessions that the Berth process `node_id` still has open (pool and lock)."""
        params = {"cluster": cluster, "node_id": node_id}
        with translated("heartbeat"):
            row = self._conn.execute(queries()["node_sessions"], params).fetchone()
        return int(row["sessions"]) if row else 0

    def cancel(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.cancel_safe()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()
