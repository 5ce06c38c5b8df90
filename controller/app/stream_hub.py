"""The API's live stream hub: one LISTEN per process, fanned out to every SSE client.

Started by the API server (`controller.app.api_server`); read by the stream route
(`controller.app.api_stream`). One thread follows `berth_stream` notifications; on each it
reads what changed since its cursor (`Database.stream_changes`) and offers every change to
each subscriber's bounded queue on the event loop. Nothing polls the tables: the thread
reads only when Postgres says something committed. A subscriber that falls
`BUFFER` changes behind is cut off rather than waiting for (the hub never blocks on a
client); it reconnects with `Last-Event-ID` and reads what it missed from the tables.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from controller.gateways.lock_session import listen
from controller.gateways.postgres import Database
from controller.model.errors import BerthError
from controller.observability.metrics import STREAM_CLIENTS, STREAM_DROPPED
from controller.policy.backoff import backoff_s
from controller.policy.stream_cursor import StreamCursor

log = structlog.get_logger("berth.stream")
BUFFER = 1000
READ_LIMIT = 1000
CUT: dict[str, Any] = {"kind": "cut"}


@dataclass(eq=False)  # identity: each client its own inbox
class Subscriber:
    """One SSE client's inbox, owned by the event loop; `cut` when it fell behind."""

    loop: asyncio.AbstractEventLoop
    deployment: str | None
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(BUFFER))
    cut: bool = False

    def offer(self, change: dict[str, Any]) -> None:  # runs on the event loop
        if self.cut:
            return
        if self.queue.full():
            # Cut off: its reader ends the response and the client resumes from the tables.
            self.cut = True
            STREAM_DROPPED.inc()
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(CUT)
            return
        self.queue.put_nowait(change)


class StreamHub:
    def __init__(self, database: Database, url: str, stopping: threading.Event) -> None:
        self.database = database
        self.url = url
        self.stopping = stopping
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._cursor: StreamCursor | None = None
        self._thread = threading.Thread(target=self.run, name="stream", daemon=True)
        self.ready = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def safe_cursor(self) -> int:
        with self._lock:
            if self._cursor is None:
                return self.database.stream_head()
            return self._cursor.safe

    def subscribe(self, deployment: str | None) -> Subscriber:
        subscriber = Subscriber(asyncio.get_running_loop(), deployment)
        with self._lock:
            self._subscribers.add(subscriber)
            STREAM_CLIENTS.set(len(self._subscribers))
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)
            STREAM_CLIENTS.set(len(self._subscribers))

    # --- the thread ------------------------------------------------------------------------
    def run(self) -> None:
        attempt = 0
        while not self.stopping.is_set():
            try:
                for payload in listen(self.url, poll_s=0.5, query="listen_stream"):
                    if self.stopping.is_set():
                        return
                    if payload is None and self._cursor is not None:
                        self._cursor.expire(time.monotonic())
                        if self.ready.is_set():
                            continue
                    self._read()
                    self.ready.set()
                    attempt = 0
            except BerthError as error:
                attempt += 1
                log.warning("stream listener lost", error=str(error), attempt=attempt)
                self.stopping.wait(backoff_s(attempt, 0.2, 5.0))

    def _read(self) -> None:
        """Read every change since the cursor (after a reconnect too: LISTEN was re-armed
        first, so nothing committed in between is missed) and hand it out."""
        if self._cursor is None:
            head = self.database.stream_head()
            with self._lock:
                self._cursor = StreamCursor(head)
            return
        cursor = self._cursor
        while True:
            rows = self.database.stream_changes(
                cursor.delivered, cursor.open_holes(), None, READ_LIMIT
            )
            with self._lock:
                fresh = set(cursor.accept((row["seq"] for row in rows), time.monotonic()))
                subscribers = list(self._subscribers)
            changes = [row for row in rows if row["seq"] in fresh]
            if changes:
                self._fan_out(subscribers, changes)
            if len(rows) < READ_LIMIT:
                return

    @staticmethod
    def _fan_out(subscribers: list[Subscriber], changes: list[dict[str, Any]]) -> None:
        for subscriber in subscribers:
            wanted = [c for c in changes if subscriber.deployment in (None, c["deployment"])]
            if wanted:
                subscriber.loop.call_soon_threadsafe(_offer_all, subscriber.offer, wanted)


def _offer_all(offer: Callable[[dict[str, Any]], None], changes: list[dict[str, Any]]) -> None:
    for change in changes:
        offer(change)
