"""Helpers of the API tests: an HTTP client with a token, an SSE reader, a webhook receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from tests.integration.conftest import berth_ok


def token(database_url: str, scope: str, name: str) -> str:
    """`berth token create` as an operator runs it; the token it prints once."""
    return berth_ok(database_url, "token", "create", "--scope", scope, "--name", name).strip()


def client(port: int, secret: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30)


@dataclass
class Change:
    kind: str
    id: int
    seq: int
    deployment: str
    data: dict[str, Any]
    at: float


@dataclass
class StreamReader:
    """Reads GET /api/v1/stream in a thread into `changes` until `close()`."""

    port: int
    secret: str
    last_event_id: int | None = None
    deployment: str | None = None
    changes: list[Change] = field(default_factory=list)
    hello: int | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _connected: threading.Event = field(default_factory=threading.Event)

    def start(self) -> StreamReader:
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self._connected.wait(10), "the stream did not answer"
        return self

    def _read(self) -> None:
        headers = {"Authorization": f"Bearer {self.secret}"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = str(self.last_event_id)
        params = {"deployment": self.deployment} if self.deployment else {}
        url = f"http://127.0.0.1:{self.port}/api/v1/stream"
        with httpx.stream(
            "GET", url, headers=headers, params=params, timeout=httpx.Timeout(5, read=None)
        ) as response:
            assert response.status_code == 200, response.read()
            self._connected.set()
            event, data, ident = "message", "", None
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if line == "":
                    if event == "hello":
                        self.hello = int(ident or 0)
                    elif data:
                        body = json.loads(data)
                        self.changes.append(
                            Change(event, int(ident or 0), body["seq"], body["deployment"],
                                   body["data"], time.monotonic())
                        )  # fmt: skip
                    event, data, ident = "message", "", None
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
                elif line.startswith("id:"):
                    ident = line[3:].strip()

    def last_id(self) -> int:
        return self.changes[-1].id if self.changes else (self.hello or 0)

    def close(self) -> None:
        self._stop.set()


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1: records every POST; answers the codes queued in
    `answers` for its event (X-Berth-Event), then 200."""

    answers: dict[str, list[int]] = field(default_factory=dict)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            self.received.append((headers, body))
            queued = self.answers.get(headers.get("X-Berth-Event", ""), [])
            return queued.pop(0) if queued else 200


@contextmanager
def webhook_receiver(receiver: Receiver) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            code = receiver.answer(dict(self.headers.items()), body)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
