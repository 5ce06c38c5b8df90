"""Berth's own error types, kopf-style: transient errors are retried, permanent ones are not.

The gateways (`controller.database`, `controller.docker_gateway`) are the only modules that
see driver exceptions; they translate them into these, chained with `raise ... from`.
The reconciler decides retries by type alone.
"""

from __future__ import annotations

import structlog
import tenacity


class BerthError(Exception):
    """Base of every error Berth raises on purpose."""


class TransientError(BerthError):
    """Might succeed if tried again later (network, restarts, races, busy resources)."""


class PermanentError(BerthError):
    """Will fail again until something changes the input (usually the spec)."""


class DockerUnavailable(TransientError):
    """The Docker engine did not answer."""


class DockerConflict(TransientError):
    """Docker refused because of concurrent change (name taken by a container being removed...)."""


class DockerServerError(TransientError):
    """The Docker engine failed a request (5xx) for a reason that may pass (port busy, load)."""


class DockerRejected(PermanentError):
    """Docker refused the request as invalid (bad port binding, bad command...)."""


class ImageUnavailable(PermanentError):
    """The image is not present locally and could not be pulled."""


class NameTaken(PermanentError):
    """A container without Berth's labels holds the name Berth needs; Berth never touches it."""


class DatabaseUnavailable(TransientError):
    """Postgres did not answer or dropped the connection."""


class DatabaseRejected(PermanentError):
    """Postgres refused a statement (constraint violation, bad input)."""


class InvalidSpec(PermanentError):
    """A deployment row or file that does not describe a valid deployment."""


class Deposed(BerthError):
    """This replica is not (or no longer) the leader: it must not change anything."""


class NotFound(BerthError):
    """The named deployment does not exist."""


def _log_retry(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    _retry_log.warning("retrying", attempt=state.attempt_number, error=str(error))


_retry_log = structlog.get_logger("berth.retry")

retry_transient = tenacity.retry(
    retry=tenacity.retry_if_exception_type(TransientError),
    stop=tenacity.stop_after_attempt(4),
    wait=tenacity.wait_exponential(multiplier=0.1, max=2.0),
    before_sleep=_log_retry,
    reraise=True,
)
"""Retry a gateway call on transient errors only: 4 attempts within about a second."""
