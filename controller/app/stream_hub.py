"""The API's live stream hub: one LISTEN per process, fanned out to every SSE client.

Started by the API server (`controller.app.api_server`); read by the stream route
(`controller.app.api_stream`). One thread follows `berth_stream` notifications and only
raises a flag; a second reads what changed since its cursor (`Database.stream_changes`)
whenever the flag is up, so a burst of commits costs one read, not one per commit.
Nothing polls the tables: the reader reads only when Postgres said something committed.
Each change is encoded once, as its server-sent-event frame, and the same bytes are offered
to every client's inbox on the event loop. A client that falls `BUFFER` changes behind is
cut off rather than waited for (the hub never blocks on a client); it reconnects with
`Last-Event-ID` and reads what it missed from the tables.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
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
BUFFER = 1000  # changes a client may be behind before it is cut off
READ_LIMIT = 1000
HOLE_CHECK_S = 0.5
# After a read, the next waits this long: a lone change goes out at once, a burst is read
# (and written to every client) at most 20 times a second instead of once per commit.
COALESCE_S = 0.05

Frame = tuple[int, str, bytes]  # (seq, deployment, the encoded SSE message)


def encode(change: dict[str, Any], cursor: int) -> Frame:
    """One change as its SSE message: `event` its kind, `id` a cursor to resume from."""
    body = {"seq": change["seq"], "deployment": change["deployment"], "data": change["data"]}
    data = json.dumps(body, default=str, separators=(",", ":"))
    text = f"id: {cursor}\nevent: {change['kind']}\ndata: {data}\n\n"
    return change["seq"], change["deployment"], text.encode()


@dataclass(eq=False)  # identity: each client its own inbox
class Subscriber:
    """One SSE client's inbox of frame batches, owned by the event loop."""

    loop: asyncio.AbstractEventLoop
    deployment: str | None
    queue: asyncio.Queue[list[Frame]] = field(default_factory=asyncio.Queue)
    pending: int = 0
    cut: bool = False

    def offer(self, frames: list[Frame]) -> None:  # runs on the event loop
        if self.cut:
            return
        if self.pending + len(frames) > BUFFER:
            # Cut off: its reader ends the response and the client resumes from the tables.
            self.cut = True
            STREAM_DROPPED.inc()
            self.queue.put_nowait([])
            return
        self.pending += len(frames)
        self.queue.put_nowait(frames)

    def taken(self, frames: list[Frame]) -> None:
        self.pending -= len(frames)


class StreamHub:
    def __init__(self, database: Database, url: str, stopping: threading.Event) -> None:
        self.database = database
        self.url = url
        self.stopping = stopping
        self._lock = threading.Lock()
        self._subscribers: set[Subscriber] = set()
        self._cursor: StreamCursor | None = None
        self._wake = threading.Event()
        self.ready = threading.Event()

    def start(self) -> None:
        for name, target in (("stream-listen", self._listen), ("stream-read", self._reader)):
            threading.Thread(target=target, name=name, daemon=True).start()

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

    # --- the threads -------------------------------------------------------------------------
    def _listen(self) -> None:
        """Raise the flag at each notification, and after each (re)connect: whatever
        committed while the session was down is read then."""
        attempt = 0
        while not self.stopping.is_set():
            try:
                subscribed = False
                for payload in listen(self.url, poll_s=0.5, query="listen_stream"):
                    if self.stopping.is_set():
                        return
                    if payload is not None or not subscribed:
                        subscribed, attempt = True, 0
                        self._wake.set()
            except BerthError as error:
                attempt += 1
                log.warning("stream listener lost", error=str(error), attempt=attempt)
                self.stopping.wait(backoff_s(attempt, 0.2, 5.0))

    def _reader(self) -> None:
        while not self.stopping.is_set():
            woken = self._wake.wait(HOLE_CHECK_S)
            self._wake.clear()
            if self.stopping.is_set():
                return
            if not woken:
                if self._cursor is not None:
                    with self._lock:
                        self._cursor.expire(time.monotonic())
                continue
            try:
                self._read()
                self.ready.set()
                self.stopping.wait(COALESCE_S)
            except BerthError as error:
                log.warning("stream read failed", error=str(error))
                self._wake.set()
                self.stopping.wait(1.0)

    def _read(self) -> None:
        """Read every change since the cursor and hand it out, encoded once."""
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
                safe = cursor.safe
                subscribers = list(self._subscribers)
            frames = [encode(row, min(row["seq"], safe)) for row in rows if row["seq"] in fresh]
            if frames:
                self._fan_out(subscribers, frames)
            if len(rows) < READ_LIMIT:
                return

    @staticmethod
    def _fan_out(subscribers: list[Subscriber], frames: list[Frame]) -> None:
        """One wake-up of each event loop per read, whatever the number of clients."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Subscriber, list[Frame]]]] = {}
        for subscriber in subscribers:
            wanted = frames
            if subscriber.deployment is not None:
                wanted = [f for f in frames if f[1] == subscriber.deployment]
            if wanted:
                by_loop.setdefault(subscriber.loop, []).append((subscriber, wanted))
        for loop, offers in by_loop.items():
            loop.call_soon_threadsafe(_offer_all, offers)


def _offer_all(offers: list[tuple[Subscriber, list[Frame]]]) -> None:
    for subscriber, frames in offers:
        subscriber.offer(frames)
