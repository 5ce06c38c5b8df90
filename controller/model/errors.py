"""Berth's own error types, kopf-style: transient errors are retried, permanent ones are not.

Pure data, imported everywhere. The gateways (`controller.gateways.postgres`,
`controller.gateways.docker_engine`) are the only modules that see driver exceptions; they
translate them into these, chained with `raise ... from`, and retry transient ones
(`controller.gateways.retry`). The policy layer decides a failed pass's fate by type.
"""

from __future__ import annotations


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


class PermissionDenied(DatabaseRejected):
    """The database role may not do this; the message names the role and the table."""


class SchemaMissing(PermanentError):
    """The database has no Berth schema, or an older one: `berth migrate` first."""


class InvalidSpec(PermanentError):
    """A deployment row or file that does not describe a valid deployment."""


class Deposed(BerthError):
    """This replica is not (or no longer) the leader: it must not change anything."""


class Abandoned(BerthError):
    """The daemon is stopping; a pass stopped between two actions (safe: level-triggered)."""


class HealthDeadlineExceeded(TransientError):
    """Replicas did not become ready within the health-check deadline."""


class StuckTooOften(TransientError):
    """A phase kept making no progress although it was resumed."""


class SourceUnavailable(TransientError):
    """A source could not be fetched for a reason that may pass (git remote unreachable)."""


class SourceInvalid(PermanentError):
    """A source that cannot be built as given: missing ref or Dockerfile, an archive whose
    sha256 does not match, a path outside the allowed directories, unsafe archive members."""


class BuildStepFailed(PermanentError):
    """A build step exited non-zero: permanent at this revision."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class BuildFailed(PermanentError):
    """A source deployment's build failed, died or was cancelled: the pass fails with its
    reason and touches no container (the previous generation keeps serving)."""


class BuildCancelled(BerthError):
    """An operator cancelled the build (cancel_requested_at); its work was stopped."""


class ProxyUnavailable(TransientError):
    """The reverse proxy's admin API did not answer (or is not configured)."""


class ProxyRejected(PermanentError):
    """The proxy refused a configuration (a bug of Berth's, or a foreign proxy)."""


class CertificateFailed(TransientError):
    """An ACME server did not issue a certificate (unreachable, refused, a challenge not
    validated); retried with the one backoff."""


class NotFound(BerthError):
    """What was named does not exist (a deployment, a build, a replica)."""


class ReplicaVanished(NotFound):
    """A replica Berth acted on is gone: removed behind its back, or by the engine. The
    world changed, not the spec: the pass observes again and plans anew at once (never a
    `failed` phase), and the API answers 404."""


class ImageVanished(ReplicaVanished):
    """The image a create needs was removed after the pass saw it present. As with a
    vanished replica, the world changed, not the spec: the pass plans again at once, and
    looks for the image (pulling it) anew."""


class Conflict(BerthError):
    """The change conflicts with the current state: the name exists, the row moved on since
    the generation the caller read, or the build already ended."""


class Unauthorized(BerthError):
    """No valid API token (missing, unknown or revoked)."""


class Forbidden(BerthError):
    """A valid API token whose scope does not allow this (a read token writing)."""


class WebhookUnreachable(TransientError):
    """A webhook endpoint did not answer (refused, reset, DNS, timeout)."""


class DataPlaneRefused(BerthError):
    """This replica may not lead: another database's engine, or not the cluster's engine."""
