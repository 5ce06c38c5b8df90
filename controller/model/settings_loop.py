"""Settings of the reconciliation loop: retries and deadlines, restarts, and what replicas
may ask of the host and the proxy: sections of `controller.model.settings.Settings`.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from controller.model.phases import MOVING_PHASES


class ConvergeSettings(BaseSettings):
    """How passes converge: health deadlines, retries of failures, stops, stuck phases."""

    model_config = SettingsConfigDict(env_prefix="BERTH_", extra="ignore")

    health_check_deadline_s: float = Field(
        default=300.0,
        gt=0,
        description=(
            "Seconds a deployment may stay in `health_check` before it is failed and retried. "
            "Five minutes covers slow-starting services with a generous start_period."
        ),
    )
    health_poll_interval_s: float = Field(
        default=2.0,
        gt=0,
        description=(
            "Seconds between re-checks while waiting for health. Docker health events wake "
            "Berth first; this is the backstop."
        ),
    )
    retry_base_s: float = Field(
        default=1.0,
        gt=0,
        description="Seconds before the first retry of a transient failure; doubles per failure.",
    )
    retry_max_s: float = Field(
        default=300.0,
        gt=0,
        description=(
            "Ceiling in seconds of the retry backoff, the same 5 minutes as Kubernetes' "
            "CrashLoopBackOff, so a broken dependency is probed a few times an hour."
        ),
    )
    permanent_retry_s: float = Field(
        default=600.0,
        gt=0,
        description=(
            "Seconds before a deployment that failed for a reason of its own spec (image "
            "missing, command not in the image) is tried again unchanged: what it lacked may "
            "have appeared since (an image loaded by hand). A spec change or the Docker engine "
            "coming back retries it at once; 10 minutes keeps a hopeless one cheap."
        ),
    )
    stop_timeout_s: int = Field(
        default=10,
        ge=0,
        description=(
            "Seconds a container gets between SIGTERM and SIGKILL when Berth removes it "
            "(Docker's own default)."
        ),
    )
    stuck_deadline_s: float = Field(
        default=600.0,
        gt=0,
        description=(
            "Seconds a moving phase (queued, pulling_image, creating, starting, deleting) may "
            "go without change before the deployment counts as stuck and is resumed; the "
            "third time it is failed. Kubernetes' progressDeadlineSeconds default. "
            "`pulling_source` and `building` default to their build timeouts plus a minute; "
            "waiting in the build queue is not being stuck."
        ),
    )
    stuck_deadline_by_phase_s: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Per-phase overrides of the stuck deadline in seconds, as JSON, e.g. "
            '`{"pulling_image": 1800}` where pulls through a slow registry are normal. '
            "Phases not named use BERTH_STUCK_DEADLINE_S."
        ),
    )
    mutation_log_retention_s: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description=(
            "Seconds the mutation log (berth_mutations) keeps entries, and `build_logs` the "
            "output of finished builds (the `builds` rows stay); pruned hourly by the "
            "leader. A week covers post-incident review."
        ),
    )

    @field_validator("stuck_deadline_by_phase_s")
    @classmethod
    def _moving_phases(cls, value: dict[str, float]) -> dict[str, float]:
        moving = {str(phase) for phase in MOVING_PHASES}
        unknown = set(value) - moving
        if unknown:
            raise ValueError(f"not moving phases: {sorted(unknown)}; use {sorted(moving)}")
        if any(seconds <= 0 for seconds in value.values()):
            raise ValueError("deadlines must be > 0 seconds")
        return value


class RestartSettings(BaseSettings):
    """Restarts of failed replicas: the crash-loop backoff and what a restart reports."""

    model_config = SettingsConfigDict(env_prefix="BERTH_", extra="ignore")

    restart_backoff_initial_s: float = Field(
        default=10.0,
        ge=0,
        description=(
            "Seconds before the second restart of a replica that keeps exiting or turning "
            "unhealthy (the first is immediate); doubles per restart. Kubernetes' "
            "CrashLoopBackOff starts at 10 s too."
        ),
    )
    restart_backoff_max_s: float = Field(
        default=300.0,
        gt=0,
        description="Ceiling in seconds of the restart backoff: CrashLoopBackOff's 5 minutes.",
    )
    restart_backoff_reset_s: float = Field(
        default=600.0,
        gt=0,
        description=(
            "Seconds a replica must go without a restart before its count starts over "
            "(Kubernetes resets after 10 minutes of running)."
        ),
    )
    recreate_after_restarts: int = Field(
        default=3,
        ge=0,
        description=(
            "Restarts in a row after which the replica's container is recreated instead of "
            "restarted (a fresh filesystem), while the backoff keeps growing. 3 gives a plain "
            "restart a fair chance first."
        ),
    )
    log_tail_lines: int = Field(
        default=20,
        ge=0,
        le=1000,
        description=(
            "Lines of a failing container's log kept in its restart event, so the operator sees "
            "why without opening Docker. 20 fits a stack trace's end in a readable row."
        ),
    )


class RouteSettings(BaseSettings):
    """The proxy, where ports are published, and which host paths replicas may mount."""

    model_config = SettingsConfigDict(env_prefix="BERTH_", extra="ignore")

    proxy_admin_url: str = Field(
        default="unix:///run/berth/proxy.sock",
        pattern=r"^(|unix:///\S+|tcp://[^\s:/]+:[0-9]+)$",
        description=(
            "HAProxy's admin socket (`unix:///path` or `tcp://127.0.0.1:port`), through "
            "which Berth programs the routes at run time (never a reload). Its static "
            "configuration comes from `berth proxy-config`. Empty: no proxy; deployments "
            "with routes then say so in their message."
        ),
    )
    proxy_http_addr: str = Field(
        default="127.0.0.1:8080",
        description=(
            "host:port the proxy listens on for the routes' HTTP traffic (written into its "
            "configuration by `berth proxy-config`). Loopback by default: set 0.0.0.0:80 "
            "to serve other machines."
        ),
    )
    proxy_https_addr: str = Field(
        default="127.0.0.1:8443",
        description=(
            "host:port the proxy listens on for HTTPS (routes with `tls`; written into its "
            "configuration by `berth proxy-config`). Empty: no HTTPS listener. ACME servers "
            "validate through BERTH_PROXY_HTTP_ADDR, which must then be the host's port 80."
        ),
    )
    acme_directory_url: str = Field(
        default="https://acme-v02.api.letsencrypt.org/directory",
        description=(
            "The ACME server certificates for `tls` routes are obtained from (Let's Encrypt "
            "by default; its staging directory or a private server such as pebble for tests)."
        ),
    )
    acme_email: str = Field(
        default="",
        description="Contact address given to the ACME server for expiry notices (optional).",
    )
    acme_ca_bundle: str = Field(
        default="",
        description=(
            "A CA bundle file to trust for the ACME server's own HTTPS (a private ACME "
            "server); empty: the system's trust store."
        ),
    )
    certificate_interval_s: float = Field(
        default=10.0,
        gt=0,
        description=(
            "How often the leader checks the certificates of `tls` routes: missing, due for "
            "renewal (two thirds of their lifetime), asked to renew, or not in the proxy."
        ),
    )
    publish_address: str = Field(
        default="127.0.0.1",
        description=(
            "Host address a deployment's published `ports` bind to. Loopback by default: "
            "services are reached through the reverse proxy (`routes`), and nothing is "
            "exposed to other machines unless an operator says so (0.0.0.0: every interface). "
            "Applies to containers created from then on."
        ),
    )
    allowed_bind_paths: list[str] = Field(
        default_factory=list,
        description=(
            "Host directories whose paths deployments may bind-mount (`volumes[].source`), "
            'as a JSON list, e.g. ["/srv/berth"]. Empty by default: a bind mount gives a '
            "container the host's files, so an administrator names the few directories meant "
            "for it. `/` and the Docker socket need a `policy` row besides."
        ),
    )
