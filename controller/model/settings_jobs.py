"""Settings of the leader's jobs beside the loop: builds, retention, the API and webhooks:
sections of `controller.model.settings.Settings`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from controller.model.settings_daemon import host_port


class BuildSettings(BaseSettings):
    """Deploying from source: the build queue, its retries and timeouts, images, archives."""

    model_config = SettingsConfigDict(env_prefix="BERTH_", extra="ignore")

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
    registry: str = Field(
        default="",
        pattern=r"^$|^[A-Za-z0-9.-]+(:[0-9]{1,5})?$",
        description=(
            "The registry (`host:port`) every built image is pushed to, and run from pinned "
            "by digest (`host:port/berth-build/...@sha256:...`), so that every node of a "
            "swarm runs exactly what was built. Empty: images stay on the building engine "
            "(one host). `deploy/setup-host.sh` starts Debian's registry on 127.0.0.1:5000; "
            "nodes of a swarm must reach it at this address (and trust it)."
        ),
    )
    registry_config: str = Field(
        default="",
        description=(
            "The registry's configuration file on the leader's host (`/etc/berth/registry.yml`"
            " from `deploy/setup-host.sh`): when set, the janitor runs the registry's "
            "`garbage-collect` after pruning manifests, freeing their layers' disk. Empty: "
            "manifests are deleted and the registry's own collection is left to the operator."
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


class RetentionSettings(BaseSettings):
    """The janitor: how long events and build logs are kept."""

    model_config = SettingsConfigDict(env_prefix="BERTH_", extra="ignore")

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


class ApiSettings(BaseSettings):
    """The HTTP API and the webhooks' deliveries."""

    model_config = SettingsConfigDict(env_prefix="BERTH_", extra="ignore")

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

    @field_validator("api_addr")
    @classmethod
    def _api_addr_form(cls, value: str) -> str:
        return host_port(value, empty_allowed=True)
