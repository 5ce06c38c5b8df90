"""The one backoff formula: exponential, capped. Pure.

Used for a failed pass's retry (`controller.policy.settle`), a crash-looping replica's
restart (`controller.policy.crashloop`), the gateways' in-call retries
(`controller.gateways.retry`), and the watchers' and leadership's reconnects.
"""

from __future__ import annotations


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """Delay before retry number `attempt` (1-based): base * 2^(attempt-1), at most `max_s`."""
    exponent = min(max(attempt - 1, 0), 30)
    return float(min(base_s * 2**exponent, max_s))
