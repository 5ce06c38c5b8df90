"""Settings of the daemon process itself, of leadership among replicas and of the database
roles: sections of `controller.model.settings.Settings`, each read from the same `BERTH_*`
variables and usable alone by the part of Berth that needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from controller.model.names import NAME_REGEX

ROLE_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"
# Stops at once by default: what Docker 20.10 before 20.10.27 was seen to take
# (policy/engine_faults warns of a setting above it on such an engine).
DEFAULT_STOP_CONCURRENCY = 8


def host_port(value: str, empty_allowed: bool = False) -> str:
    """`host:port` (port 0 picks one); `empty_allowed`: "" turns the listener off."""
    if value == "" and empty_allowed:
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be host:port, e.g. 127.0.0.1:9321")
    return value


class DaemonSettings(BaseSettings):
    """The daemon: its database, its endpoint, its cluster, its workers and its logs."""

    model_config = SettingsConfigDict(env_prefix="BERTH_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description=(
            "libpq URL of the Postgres holding `deployments`. Unset means: start (or reuse) an "
            "embedded Postgres in `data_dir`, so a first run needs no setup. With standbys, "
            "name every server and `target_session_attrs=read-write` "
            "(`postgresql://a,b/berth?target_session_attrs=read-write`): Berth follows a "
            "promotion; a server that takes no writes is refused, naming it."
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
    runtime: Literal["docker", "swarm"] = Field(
        default="docker",
        description=(
            "What runs the replicas: `docker`, one engine (a replica is a container), or "
            "`swarm`, a Docker Swarm whose manager DOCKER_HOST names (a replica is a service "
            'of one task, placed on a node by Swarm; RECONCILIATION.md, "The swarm '
            'runtime").'
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
    stop_concurrency: int = Field(
        default=DEFAULT_STOP_CONCURRENCY,
        ge=1,
        le=64,
        description=(
            "Replicas stopped at once off the pass (old revisions, scale-downs, deletes). "
            "Docker 20.10 before 20.10.27 (Debian 12's `docker.io` is 20.10.24) can deadlock "
            "under many container exits at once (moby/libnetwork#2649): 32 at once wedged "
            "it, and 8 once (a teardown of 200 on a loaded machine), while 200 removals took "
            "the same time at 8, 16 and 32. Raise it on a fixed engine when many replicas "
            "wait out a long stop grace."
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

    @field_validator("http_addr")
    @classmethod
    def _http_addr_form(cls, value: str) -> str:
        return host_port(value)

    @property
    def http_host(self) -> str:
        return self.http_addr.rpartition(":")[0].strip("[]")

    @property
    def http_port(self) -> int:
        return int(self.http_addr.rpartition(":")[2])


class LeadershipSettings(BaseSettings):
    """Leadership among Berth's replicas: heartbeats, the trust window, the lock's silence."""

    model_config = SettingsConfigDict(env_prefix="BERTH_", extra="ignore")

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

    @model_validator(mode="after")
    def _leader_timing(self) -> LeadershipSettings:
        if self.leader_trust_window_s < 2 * self.leader_heartbeat_interval_s:
            raise ValueError(
                "leader_trust_window_s must be at least 2x leader_heartbeat_interval_s"
            )
        if self.leader_silence_timeout_s <= self.leader_trust_window_s:
            raise ValueError("leader_silence_timeout_s must exceed leader_trust_window_s")
        return self


class RoleSettings(BaseSettings):
    """The database roles the migration to schema 15 makes."""

    model_config = SettingsConfigDict(env_prefix="BERTH_", extra="ignore")

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

    @property
    def database_roles(self) -> dict[str, str]:
        """The role names by kind, for the migration that makes them."""
        return {
            "operator": self.role_operator,
            "viewer": self.role_viewer,
            "daemon": self.role_daemon,
            "admin": self.role_admin,
        }
