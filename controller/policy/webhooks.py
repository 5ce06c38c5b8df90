"""Webhook decisions: how a delivery is signed, and what follows an attempt.

Pure: no I/O. Called by the webhook sender (`controller.loop.webhooks`). A receiver checks
`X-Berth-Signature: sha256=<hex>`, the HMAC-SHA256 of the exact body with the webhook's
secret, and de-duplicates on `X-Berth-Delivery` (delivery is at least once).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from controller.policy.backoff import backoff_s

SIGNATURE_HEADER = "X-Berth-Signature"
DELIVERY_HEADER = "X-Berth-Delivery"
EVENT_HEADER = "X-Berth-Event"


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AfterAttempt:
    status: str  # "delivered", "pending" (retried after retry_in_s) or "dead"
    retry_in_s: float = 0.0


def after_attempt(
    status_code: int | None, attempts: int, max_attempts: int, base_s: float, cap_s: float
) -> AfterAttempt:
    """A 2xx answer delivers; anything else (no answer, 3xx, 4xx, 5xx) is retried with the
    one backoff formula until `max_attempts`, then the delivery is dead (kept, visible)."""
    if status_code is not None and 200 <= status_code < 300:
        return AfterAttempt("delivered")
    if attempts >= max_attempts:
        return AfterAttempt("dead")
    return AfterAttempt("pending", backoff_s(attempts, base_s, cap_s))
