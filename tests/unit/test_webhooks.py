"""Webhooks: the signature, what follows an attempt, and the sender on in-memory fakes."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from controller.loop.webhooks import WebhookSender
from controller.model.errors import Deposed, WebhookUnreachable
from controller.policy.webhooks import after_attempt, signature
from tests.fakes import unit_settings


def test_signature_is_the_hmac_sha256_of_the_body() -> None:
    body = b'{"event":"active"}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature("s3cret", body) == f"sha256={expected}"


@pytest.mark.parametrize(
    ("status_code", "attempts", "status"),
    [
        (200, 1, "delivered"),
        (204, 9, "delivered"),
        (500, 1, "pending"),
        (None, 3, "pending"),
        (404, 2, "pending"),
        (301, 2, "pending"),
        (500, 10, "dead"),
        (None, 10, "dead"),
    ],
)
def test_after_attempt(status_code: int | None, attempts: int, status: str) -> None:
    decision = after_attempt(status_code, attempts, max_attempts=10, base_s=1.0, cap_s=60.0)
    assert decision.status == status
    assert (decision.retry_in_s > 0) == (status == "pending")


def test_retries_back_off_up_to_the_cap() -> None:
    waits = [after_attempt(500, n, 100, 1.0, 60.0).retry_in_s for n in range(1, 12)]
    assert waits[0] < waits[3] and max(waits) <= 60.0


class FakeOutbox:
    def __init__(self, deliveries: list[dict[str, Any]]) -> None:
        self.pending = deliveries
        self.finished: list[tuple[int, str, int | None, str | None, float]] = []

    def claim_deliveries(self, limit: int, lease_s: float) -> list[dict[str, Any]]:
        claimed, self.pending = self.pending[:limit], self.pending[limit:]
        for delivery in claimed:
            delivery["attempts"] += 1
        return claimed

    def finish_delivery(
        self,
        delivery_id: int,
        status: str,
        status_code: int | None,
        error: str | None,
        retry_in_s: float = 0.0,
    ) -> None:
        self.finished.append((delivery_id, status, status_code, error, retry_in_s))


class FakeEndpoints:
    def __init__(self, answers: dict[str, int | None]) -> None:
        self.answers = answers
        self.received: list[tuple[str, bytes, dict[str, str]]] = []

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        self.received.append((url, body, headers))
        answer = self.answers[url]
        if answer is None:
            raise WebhookUnreachable("connection refused")
        return answer


class Leader:
    def __init__(self, leading: bool = True) -> None:
        self.leading = leading

    def fence(self) -> Any:
        if not self.leading:
            raise Deposed("not the leader")
        return None


def delivery(delivery_id: int, url: str, secret: str = "k") -> dict[str, Any]:
    return {
        "id": delivery_id,
        "event": "active",
        "deployment": "web",
        "payload": {"event": "active", "deployment": "web"},
        "attempts": 0,
        "url": url,
        "secret": secret,
        "enabled": True,
    }


def no_listen(channel_query: str, poll_s: float) -> Iterator[str | None]:
    raise AssertionError("these tests drive the sender without a LISTEN session")


def sender(outbox: FakeOutbox, endpoints: FakeEndpoints, leading: bool = True) -> WebhookSender:
    return WebhookSender(
        unit_settings(), outbox, endpoints, Leader(leading), threading.Event(), no_listen
    )


def test_a_delivery_is_signed_and_recorded() -> None:
    outbox = FakeOutbox([delivery(1, "http://ok", secret="k")])
    endpoints = FakeEndpoints({"http://ok": 200})
    sender(outbox, endpoints).deliver(outbox.claim_deliveries(1, 30)[0])
    _url, body, headers = endpoints.received[0]
    assert headers["X-Berth-Signature"] == signature("k", body)
    assert headers["X-Berth-Delivery"] == "1"
    assert json.loads(body)["delivery"] == 1
    assert outbox.finished == [(1, "delivered", 200, None, 0.0)]


def test_a_dead_endpoint_is_retried_and_the_others_still_delivered() -> None:
    outbox = FakeOutbox([delivery(1, "http://down"), delivery(2, "http://ok")])
    endpoints = FakeEndpoints({"http://down": None, "http://ok": 200})
    running = sender(outbox, endpoints)
    for claimed in outbox.claim_deliveries(10, 30):
        running.deliver(claimed)
    outcomes = {entry[0]: entry for entry in outbox.finished}
    assert outcomes[1][1] == "pending" and outcomes[1][4] > 0
    assert "connection refused" in str(outcomes[1][3])
    assert outcomes[2][1] == "delivered"


def test_a_follower_claims_nothing() -> None:
    outbox = FakeOutbox([delivery(1, "http://ok")])
    assert sender(outbox, FakeEndpoints({"http://ok": 200}), leading=False).dispatch() == 0
    assert len(outbox.pending) == 1
