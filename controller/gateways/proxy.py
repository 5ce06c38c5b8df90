"""The proxy gateway: Caddy 2 through its admin API.

Used by the route keeper (`controller.loop.routes`). Only this module talks HTTP to the
proxy. Three calls: the whole configuration (`current`), loading a whole one (`load`, a
graceful reload: no connection is dropped, the proxy is never restarted), and replacing
the handlers of one route by its `@id` (`set_handlers`, the per-change path: only the
affected route changes). Connection errors and 5xx are `ProxyUnavailable` (transient); a
refused configuration is `ProxyRejected`.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests

from controller.model.errors import ProxyRejected, ProxyUnavailable
from controller.observability.metrics import PROXY_DURATION, PROXY_ERRORS

TIMEOUT_S = 3.0


@contextmanager
def _translated(call: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    except requests.RequestException as error:
        PROXY_ERRORS.labels(call=call).inc()
        raise ProxyUnavailable(f"proxy admin API: {call}: {error}") from error
    finally:
        PROXY_DURATION.labels(call=call).observe(time.perf_counter() - started)


class ProxyGateway:
    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url.rstrip("/")
        self._session = requests.Session()

    @property
    def admin_listen(self) -> str:
        """host:port of the admin API, as the configuration must keep it."""
        parts = urlsplit(self.admin_url)
        return f"{parts.hostname}:{parts.port or 2019}"

    def close(self) -> None:
        self._session.close()

    def current(self) -> dict[str, Any]:
        with _translated("config"):
            answer = self._session.get(f"{self.admin_url}/config/", timeout=TIMEOUT_S)
        self._check(answer, "config")
        body = answer.json()
        return body if isinstance(body, dict) else {}

    def load(self, config: dict[str, Any]) -> None:
        with _translated("load"):
            answer = self._session.post(f"{self.admin_url}/load", json=config, timeout=TIMEOUT_S)
        self._check(answer, "load")

    def in_flight(self, addresses: Collection[str]) -> int:
        """Requests still being proxied to these upstreams (Caddy counts them per address;
        an address no configuration uses and no request holds is not listed)."""
        with _translated("upstreams"):
            answer = self._session.get(
                f"{self.admin_url}/reverse_proxy/upstreams", timeout=TIMEOUT_S
            )
        self._check(answer, "upstreams")
        return sum(
            int(upstream.get("num_requests") or 0)
            for upstream in answer.json() or ()
            if upstream.get("address") in addresses
        )

    def set_handlers(self, route_id: str, handlers: list[dict[str, Any]]) -> bool:
        """Replace one route's handlers; False when the proxy has no such route."""
        with _translated("patch"):
            answer = self._session.patch(
                f"{self.admin_url}/id/{route_id}/handle", json=handlers, timeout=TIMEOUT_S
            )
        if answer.status_code in (400, 404) and "unknown object ID" in answer.text:
            return False
        self._check(answer, "patch")
        return True

    @staticmethod
    def _check(answer: requests.Response, call: str) -> None:
        if answer.status_code >= 500:
            PROXY_ERRORS.labels(call=call).inc()
            raise ProxyUnavailable(
                f"proxy admin API: {call}: {answer.status_code} {answer.text[:200]}"
            )
        if answer.status_code >= 400:
            PROXY_ERRORS.labels(call=call).inc()
            raise ProxyRejected(
                f"proxy admin API: {call}: {answer.status_code} {answer.text[:200]}"
            )
