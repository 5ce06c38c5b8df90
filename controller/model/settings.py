"""Berth's settings: one pydantic-settings class, read from `BERTH_*` environment variables.

Called by the CLI (`controller.app.cli`) once per process; everything else receives the
`Settings` object it needs. Docker is reached through the standard `DOCKER_HOST`
variable (docker-py reads it), so it has no field here.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from controller.model.names import NAME_REGEX
from controller.model.phases import MOVING_PHASES, Phase

# A build that outlives its own timeout by this much was lost, not slow (see stuck phases).
BUILD_STUCK_MARGIN_S = 60.0


ROLE_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"


class Settings(BaseSettings):
    """Every field is an environment variable named `BERTH_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="BERTH_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description=(
            "libpq URL of the Postgres holding `deployments`. Unset means: start (or reuse) an "
            "embedded Postgres in `data_dir`, so a first run needs no setup."
        ),
    )
    data_dir: Path = Field(
        default=Path("/var/lib/berth"),
        description=(
            "Directory owned by Berth for the embedded Postgres. Kept short because the "
            "Postgres unix socket lives inside it and socket paths are limited to ~100 bytes."
        ),
    )
    http_addr: str = Field(
        default="127.0.0.1:9321",
        description=(
            "host:port of the HTTP endpoint (/healthz, /metrics). Loopback by default so "
            "nothing is exposed unasked; a distinct port per daemon lets several run on one host. "
            "Port 0 picks a free port."
        ),
    )
    cluster: str = Field(
        default="default",
        pattern=NAME_REGEX,
        description=(
            "Name of this Berth installation, stamped on its containers as `io.berth.cluster`. "
            "Two installations sharing one Docker engine never touch each other's containers. "
            "Containers without the label count as `default`'s."
        ),
    )
    resync_interval_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Seconds between full resyncs. Events wake Berth at once; the resync only catches "
            "what events missed, and costs two calls (one SQL query, one Docker list), so 30 s "
            "bounds staleness without measurable load."
        ),
    )
    concurrency: int = Field(
        default=8,
        ge=1,
        le=256,
        description=(
            "Deployments reconciled at once (worker threads). 8 keeps a 2-core Docker engine "
            "busy without queueing requests inside it; one slow deployment holds one worker only."
        ),
    )
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
    stop_timeout_s: int = Field(
        default=10,
        ge=0,
        description=(
            "Seconds a container gets between SIGTERM and SIGKILL when Berth removes it "
            "(Docker's own default)."
        ),
    )
    shutdown_grace_s: float = Field(
        default=20.0,
        ge=0,
        description=(
            "Seconds the daemon waits on SIGTERM for in-flight actions before abandoning them; "
            "below systemd's 90 s default stop timeout with room to spare."
        ),
    )
    leader_heartbeat_interval_s: float = Field(
        default=0.5,
        gt=0,
        description=(
            "Seconds between the leader's heartbeats on its lock session. Each one extends its "
            "trust window; 0.5 s keeps four heartbeats inside the 2 s window."
        ),
    )
    leader_trust_window_s: float = Field(
        default=2.0,
        gt=0,
        description=(
            "Seconds the leader trusts its leadership after sending its last successful "
            "heartbeat (monotonic clock); past it, it stops mutating and steps down. Must be "
            "at least twice the heartbeat interval and below the silence timeout."
        ),
    )
    leader_silence_timeout_s: float = Field(
        default=4.0,
        gt=0,
        description=(
            "Seconds of silence after which Postgres ends the leader's lock session "
            "(idle_session_timeout, tcp_user_timeout, keepalives) and frees the lock. Longer "
            "than the trust window, so a paused or cut-off leader has stopped trusting itself "
            "before a follower can win; it bounds failover after a pause or a partition."
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
    proxy_admin_url: str = Field(
        default="http://127.0.0.1:2019",
        description=(
            "Caddy's admin API, through which Berth owns the proxy's whole configuration "
            "(Caddy's own default address). Empty: no proxy; deployments with routes then "
            "say so in their message."
        ),
    )
    proxy_http_addr: str = Field(
        default="127.0.0.1:8080",
        description=(
            "host:port the proxy listens on for the routes' HTTP traffic. Loopback by "
            "default: set 0.0.0.0:80 to serve other machines."
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
    role_operator: str = Field(
        default="berth_operator",
        pattern=ROLE_PATTERN,
        description=(
            "Database role (NOLOGIN group) that may write deployments, secrets (never read "
            "their values) and webhooks. Made by the migration to schema 15; a name of its "
            "own so that it cannot collide with a role the server has already."
        ),
    )
    role_viewer: str = Field(
        default="berth_viewer",
        pattern=ROLE_PATTERN,
        description="Database role (NOLOGIN group) that may read, never secret values.",
    )
    role_daemon: str = Field(
        default="berth_daemon",
        pattern=ROLE_PATTERN,
        description=(
            "Database role (NOLOGIN group) for Berth itself: reads and writes its tables and "
            "secret values, and cannot change the schema (run `berth migrate` as the owner)."
        ),
    )
    role_admin: str = Field(
        default="berth_admin",
        pattern=ROLE_PATTERN,
        description=(
            "Database role (NOLOGIN group): the operator's rights, plus `policy` and "
            "`quotas`. Taken as given when schema 15 is made; rename later with ALTER ROLE."
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
    retention_interval_s: float = Field(
        default=600.0,
        gt=0,
        description=(
            "Seconds between the leader's clean-ups (old events and build logs, networks no "
            "deployment uses, images built for deleted deployments). Ten minutes: retention "
            "is about days, and each pass is a few indexed deletes and list calls."
        ),
    )
    events_max_age_s: float = Field(
        default=30 * 86400.0,
        gt=0,
        description=(
            "Seconds a deployment event is kept (30 days: long enough to look back on a "
            "month of rollouts, short enough that the table stays small)."
        ),
    )
    events_max_per_deployment: int = Field(
        default=1000,
        ge=10,
        description=(
            "Events kept per deployment, the newest; older ones go whatever their age. "
            "1,000 covers hundreds of rollouts; `berth describe` shows the last 20."
        ),
    )
    build_logs_max_age_s: float = Field(
        default=14 * 86400.0,
        gt=0,
        description=(
            "Seconds the log lines of a finished build are kept (14 days: a failed build is "
            "read within days; the image it made outlives its log)."
        ),
    )
    build_logs_max_builds: int = Field(
        default=20,
        ge=1,
        description=(
            "Finished builds per deployment whose log lines are kept, the newest: a build "
            "log is up to thousands of lines, and the builds table keeps every build's outcome."
        ),
    )
    api_addr: str = Field(
        default="127.0.0.1:9380",
        description=(
            "host:port of the HTTP API and dashboard, served by every replica (reads come "
            "from Postgres, writes are row changes). Loopback by default: every route needs a "
            "token, but exposing it is an operator's decision. Empty: no API. Port 0 picks one."
        ),
    )
    webhook_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Seconds a webhook endpoint has to answer one POST. Short: a slow endpoint is "
            "retried later rather than holding a sender."
        ),
    )
    webhook_max_attempts: int = Field(
        default=10,
        ge=1,
        description=(
            "POSTs tried per delivery before it is `dead`. With the backoff below, 10 attempts "
            "span about half an hour: an endpoint down for a deploy is not given up on."
        ),
    )
    webhook_retry_base_s: float = Field(
        default=1.0,
        gt=0,
        description="Seconds before the first retry of a failed delivery; doubles each attempt.",
    )
    webhook_retry_max_s: float = Field(
        default=600.0,
        gt=0,
        description="Cap, in seconds, of the wait between two attempts of one delivery.",
    )
    build_concurrency: int = Field(
        default=1,
        ge=1,
        le=16,
        description=(
            "Builds running at once across the whole cluster (count). One by default: a build "
            "takes CPU and disk from the apps already running, so builds take turns."
        ),
    )
    build_max_attempts: int = Field(
        default=3,
        ge=1,
        le=20,
        description=(
            "Attempts a build gets when it fails for a transient reason (git remote "
            "unreachable, Docker engine error) before it is dead-lettered (`status = 'dead'`). "
            "Three rides out a restart of a git server without retrying a broken one for long."
        ),
    )
    build_retry_base_s: float = Field(
        default=5.0,
        gt=0,
        description="Seconds before a build's first retry; doubles each attempt (jittered).",
    )
    build_retry_max_s: float = Field(
        default=120.0,
        gt=0,
        description="Longest wait between a build's retries, in seconds.",
    )
    source_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description=(
            "Seconds fetching a source (git clone, archive read) may take before the attempt "
            "is killed and retried; the stuck deadline of `pulling_source` is one minute more."
        ),
    )
    build_timeout_s: float = Field(
        default=1800.0,
        gt=0,
        description=(
            "Seconds a `docker build` may take before it is killed and the build failed; the "
            "stuck deadline of `building` is one minute more. Half an hour fits most apps."
        ),
    )
    image_retention: int = Field(
        default=3,
        ge=1,
        description=(
            "Built images kept per deployment (count), newest first: the serving one and "
            "two to roll back to without rebuilding. Images in use are never removed."
        ),
    )
    workspace_dir: Path = Field(
        default=Path("/var/lib/berth/workspaces"),
        description=(
            "Directory for per-build workspaces (a checkout or an unpacked archive), each "
            "removed when its build ends; a leftover from a crash is discarded."
        ),
    )
    archive_dirs: list[Path] = Field(
        default_factory=list,
        description=(
            'Directories from which `{"archive": {"path": ...}}` sources may be read, as a '
            "JSON list. Empty by default: host paths are refused until an administrator "
            "names where archives may come from; uploaded archives (`berth upload`) need none."
        ),
    )
    archive_max_bytes: int = Field(
        default=512 * 1024 * 1024,
        gt=0,
        description=(
            "Largest archive accepted by `berth upload`, and largest unpacked size of any "
            "archive source, in bytes (512 MiB): a source bigger than that is a mistake."
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
    migrate_on_start: bool = Field(
        default=True,
        description=(
            "Whether `berth run` applies missing schema migrations at start (under an advisory "
            "lock, so replicas starting together are safe). Set false where Berth's role may "
            "not change the schema: then `berth migrate` runs as one that may, and `berth run` "
            "refuses an older schema."
        ),
    )
    crash_at: str | None = Field(
        default=None,
        description=(
            "Fault injection for tests only: kill the daemon with SIGKILL at a named point, "
            "`before:<phase>` or `after:<create|start|remove|image>`, optionally `#N` for the "
            "N-th time. Unset in production."
        ),
    )
    log_format: str = Field(
        default="auto",
        pattern=r"^(auto|json|console)$",
        description="`json`, `console`, or `auto` (console on a terminal, JSON otherwise).",
    )
    log_level: str = Field(
        default="info",
        pattern=r"^(debug|info|warning|error)$",
        description="Lowest level logged: debug, info, warning or error. Info logs every action.",
    )

    @model_validator(mode="after")
    def _leader_timing(self) -> Settings:
        if self.leader_trust_window_s < 2 * self.leader_heartbeat_interval_s:
            raise ValueError(
                "leader_trust_window_s must be at least 2x leader_heartbeat_interval_s"
            )
        if self.leader_silence_timeout_s <= self.leader_trust_window_s:
            raise ValueError("leader_silence_timeout_s must exceed leader_trust_window_s")
        return self

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

    def stuck_deadline_s_for(self, phase: Phase | None) -> float:
        if phase is None:
            return self.stuck_deadline_s
        default = self.stuck_deadline_s
        if phase == Phase.PULLING_SOURCE:
            default = self.source_timeout_s + BUILD_STUCK_MARGIN_S
        elif phase == Phase.BUILDING:
            default = self.build_timeout_s + BUILD_STUCK_MARGIN_S
        return self.stuck_deadline_by_phase_s.get(str(phase), default)

    @field_validator("http_addr", "api_addr")
    @classmethod
    def _host_port(cls, value: str, info: ValidationInfo) -> str:
        if value == "" and info.field_name == "api_addr":
            return value  # no API
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be host:port, e.g. 127.0.0.1:9321")
        return value

    @property
    def database_roles(self) -> dict[str, str]:
        """The role names by kind, for the migration that makes them."""
        return {
            "operator": self.role_operator,
            "viewer": self.role_viewer,
            "daemon": self.role_daemon,
            "admin": self.role_admin,
        }

    @property
    def http_host(self) -> str:
        return self.http_addr.rpartition(":")[0].strip("[]")

    @property
    def http_port(self) -> int:
        return int(self.http_addr.rpartition(":")[2])


def settings_reference() -> str:
    """docs/configuration.md, generated from the fields above so the two cannot disagree."""
    lines = [
        "# Configuration",
        "",
        "Every setting is an environment variable. Generated by",
        "`python -m controller.model.settings`; a unit test keeps this file equal to the code.",
        "Docker is reached through the standard `DOCKER_HOST` (and `DOCKER_TLS_VERIFY`,",
        "`DOCKER_CERT_PATH`) variables.",
        "",
        "| variable | default | meaning |",
        "| --- | --- | --- |",
    ]
    for name, field in Settings.model_fields.items():
        value = field.get_default(call_default_factory=True)
        default = "(unset)" if value is None else value
        lines.append(f"| `BERTH_{name.upper()}` | `{default}` | {field.description} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(settings_reference(), end="")
