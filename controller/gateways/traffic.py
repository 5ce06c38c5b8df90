"""A load generator on loopback: requests through the proxy, counted, bounded, self-stopping.

Used by the route and rollout tests and by `berth bench run rollout`. It sends requests
to a loopback address only (with a Host header naming the route), from a few threads
with keep-alive connections, at most `rate` a second in all, until stopped or until
`max_requests` or `max_seconds` is reached, whichever comes first. Every answer other
than 200, and every connection error, is a failure, kept with what it was, with one
exception that every HTTP client makes (browsers, Go's net/http, RFC 9112 section 9.3.1):
a request sent on a kept-alive connection that the server had closed as idle, answered
by nothing at all, is sent once more on a new connection. Those resends are counted
(`resent`), and a resend that fails is a failure; Berth's proxy is never reloaded, so the
route tests assert that there are none.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field


@dataclass
class TrafficReport:
    sent: int = 0
    failed: int = 0
    resent: int = 0  # sent again after a kept-alive connection closed while idle
    failures: list[str] = field(default_factory=list)  # the first few, for the message
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


class Traffic:
    def __init__(
        self,
        address: str,
        host: str,
        rate: float = 250.0,
        threads: int = 4,
        max_requests: int = 200_000,
        max_seconds: float = 600.0,
        path: str = "/",
    ) -> None:
        if not address.startswith("127.0.0.1:"):
            raise ValueError("load is sent to loopback only")
        self.address, self.host, self.path = address, host, path
        self.interval_s = threads / rate
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.report = TrafficReport()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self._started = 0.0

    def __enter__(self) -> Traffic:
        self._started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> TrafficReport:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.report.seconds = time.monotonic() - self._started
        return self.report

    def _run(self) -> None:
        host, port = self.address.split(":")
        connection: http.client.HTTPConnection | None = None
        next_at = time.monotonic()
        deadline = self._started + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if self.report.sent >= self.max_requests:
                    return
                self.report.sent += 1
            problem = None
            for attempt in (1, 2):
                reused = connection is not None
                try:
                    if connection is None:
                        connection = http.client.HTTPConnection(host, int(port), timeout=5)
                    connection.request("GET", self.path, headers={"Host": self.host})
                    answer = connection.getresponse()
                    answer.read()
                    problem = None if answer.status == 200 else f"HTTP {answer.status}"
                    break
                except (OSError, http.client.HTTPException) as error:
                    problem = f"{type(error).__name__}: {error}"
                    if connection is not None:
                        connection.close()
                    connection = None
                    stale = isinstance(error, http.client.RemoteDisconnected | ConnectionResetError)
                    if not (reused and stale and attempt == 1):
                        break
                    with self._lock:
                        self.report.resent += 1
            if problem is not None:
                with self._lock:
                    self.report.failed += 1
                    if len(self.report.failures) < 10:
                        self.report.failures.append(f"{problem} at {time.time():.3f}")
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))
        if connection is not None:
            connection.close()
