"""The API's live stream hub: one LISTEN per process, fanned out to every SSE client.

Started by the API server (`controller.app.api_server`); read by the stream route
(`controller.app.api_stream`). One thread follows `berth_stream` notifications and only
raises a flag; a second reads what changed since its cursor (`ApiStore.stream_changes`)
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
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import structlog

from controller.gateways.lock_session import listener
from controller.loop.watchers import follow_notifications
from controller.model.errors import BerthError
from controller.observability.metrics import STREAM_CLIENTS, STREAM_DROPPED
from controller.policy.stream_cursor import StreamCursor

log = structlog.get_logger("berth.stream")
Frame = tuple[int, str, bytes]  # (seq, deployment, the encoded SSE message)
BUFFER = 1000  # changes a client may be behind before it is cut off
READ_LIMIT = 1000
HOLE_CHECK_S = 0.5
# After a read, the next waits this long: a lone change goes out at once; changes that
# follow closely are read (and written to every client) at most 20 times a second, and
# during a burst (a read of BURST changes or more: a fleet converging) 4 times a second.
COALESCE_S = 0.05
BURST = 20
BURST_COALESCE_S = 0.25
PING_S = 15.0  # a comment line to idle clients: proxies keep the connection, and a dead
PING: Frame = (0, "", b": ping\n\n")  # client's next write fails, ending its response


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
            STREAM_DROPPED.inc()
            self.end()
            return
        self.pending += len(frames)
        self.queue.put_nowait(frames)

    def end(self) -> None:
        """End the response (cut off, or the hub stops); the client resumes elsewhere."""
        if not self.cut:
            self.cut = True
            self.queue.put_nowait([])

    def taken(self, frames: list[Frame]) -> None:
        self.pending -= len(frames)


class StreamChanges(Protocol):
    """The stream's reads (`controller.gateways.postgres_api.ApiStore`)."""

    def stream_head(self) -> int: ...

    def stream_changes(
        self, after: int, holes: list[int], deployment: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]: ...


class StreamHub:
    def __init__(self, changes: StreamChanges, url: str, stopping: threading.Event) -> None:
        self.changes = changes
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
                return self.changes.stream_head()
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
        follow_notifications(
            listener(self.url),
            "listen_stream",
            self.stopping,
            lambda payload: None if payload is None else self._wake.set(),
            self._wake.set,
        )

    def _reader(self) -> None:
        pinged = time.monotonic()
        while not self.stopping.is_set():
            woken = self._wake.wait(HOLE_CHECK_S)
            self._wake.clear()
            if self.stopping.is_set():
                break
            now = time.monotonic()
            if now - pinged >= PING_S:
                pinged = now
                self._offer_each(lambda _subscriber: [PING])
            if not woken:
                if self._cursor is not None:
                    with self._lock:
                        self._cursor.expire(now)
                continue
            try:
                delivered = self._read()
                self.ready.set()
                self.stopping.wait(BURST_COALESCE_S if delivered >= BURST else COALESCE_S)
            except BerthError as error:
                log.warning("stream read failed", error=str(error))
                self._wake.set()
                self.stopping.wait(1.0)
        self._offer_each(lambda _subscriber: None)  # stopping: every response ends

    def _read(self) -> int:
        """Read every change since the cursor and hand it out, encoded once; how many."""
        if self._cursor is None:
            head = self.changes.stream_head()
            with self._lock:
                self._cursor = StreamCursor(head)
            return 0
        cursor = self._cursor
        delivered = 0
        while True:
            rows = self.changes.stream_changes(
                cursor.delivered, cursor.open_holes(), None, READ_LIMIT
            )
            with self._lock:
                fresh = set(cursor.accept((row["seq"] for row in rows), time.monotonic()))
                safe = cursor.safe
            frames = [encode(row, min(row["seq"], safe)) for row in rows if row["seq"] in fresh]
            delivered += len(frames)
            if frames:
                self._offer_each(partial(_frames_for, frames))
            if len(rows) < READ_LIMIT:
                return delivered

    def _offer_each(self, frames_for: Callable[[Subscriber], list[Frame] | None]) -> None:
        """Hand each client its frames (None: end its response): one wake-up of each event
        loop, whatever the number of clients."""
        with self._lock:
            subscribers = list(self._subscribers)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Subscriber, list[Frame] | None]]] = {}
        for subscriber in subscribers:
            frames = frames_for(subscriber)
            if frames is None or frames:
                by_loop.setdefault(subscriber.loop, []).append((subscriber, frames))
        for loop, offers in by_loop.items():
            loop.call_soon_threadsafe(_offer_all, offers)


def _frames_for(frames: list[Frame], subscriber: Subscriber) -> list[Frame]:
    if subscriber.deployment is None:
        return frames
    return [frame for frame in frames if frame[1] == subscriber.deployment]


def _offer_all(offers: list[tuple[Subscriber, list[Frame] | None]]) -> None:
    for subscriber, frames in offers:
        if frames is None:
            subscriber.end()
        else:
            subscriber.offer(frames)
