"""The daemon's HTTP endpoint: /metrics, /healthz, /readyz and a small JSON /status.

Started by the daemon on `BERTH_HTTP_ADDR` in a background thread. The daemon passes in
callables for the health and status answers, so this module knows nothing of the loop.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

Check = Callable[[], tuple[bool, str]]


class HttpEndpoint:
    def __init__(
        self,
        host: str,
        port: int,
        alive: Check,
        ready: Check,
        status: Callable[[], dict[str, Any]],
    ) -> None:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    ok, detail = (endpoint.alive if path == "/healthz" else endpoint.ready)()
                    self._send(200 if ok else 503, (detail + "\n").encode(), "text/plain")
                elif path == "/status":
                    body = json.dumps(endpoint.status(), default=str, indent=2).encode()
                    self._send(200, body, "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # scrapes every few seconds would drown the logs

        self.alive = alive
        self.ready = ready
        self.status = status
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
