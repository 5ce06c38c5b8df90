"""Retrying gateway calls: transient errors only, with Berth's one backoff formula.

Imported by the gateways alone (a pass never retries in place: a failed pass returns its
outcome and the controller requeues it). Tenacity does the looping.
"""

from __future__ import annotations

import structlog
import tenacity

from controller.model.errors import TransientError
from controller.policy.backoff import backoff_s

_retry_log = structlog.get_logger("berth.retry")
RETRY_ATTEMPTS = 4
RETRY_BASE_S = 0.1
RETRY_MAX_S = 2.0


def _log_retry(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    _retry_log.warning("retrying", attempt=state.attempt_number, error=str(error))


def _wait(state: tenacity.RetryCallState) -> float:
    return backoff_s(state.attempt_number, RETRY_BASE_S, RETRY_MAX_S)


retry_transient = tenacity.retry(
    retry=tenacity.retry_if_exception_type(TransientError),
    stop=tenacity.stop_after_attempt(RETRY_ATTEMPTS),
    wait=_wait,
    before_sleep=_log_retry,
    reraise=True,
)
"""Retry a gateway call on transient errors only: 4 attempts within about a second."""
