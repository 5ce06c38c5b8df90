"""What a production workload asks of its container beyond image and command: resource
limits, volumes, networks and the dangerous options only a policy may allow.

Pure: no I/O. Imported by the spec (`controller.model.spec`), which embeds these models and
turns them into a `ReplicaRequest`, and by the executor, which checks bind mounts against
the operator's allow-list (`BERTH_ALLOWED_BIND_PATHS`). The database applies the same rules
(`sql/migrations/0012_workloads.sql`); unit tests keep the two equal on the same inputs.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from controller.model.errors import InvalidSpec
from controller.model.names import NAME_REGEX

# The spec's fields of schema 12: left out of the spec hash while at their defaults.
WORKLOAD_FIELDS = (
    "resources",
    "volumes",
    "networks",
    "stop_signal",
    "stop_grace_s",
    "user",
    "read_only",
    "cap_add",
    "cap_drop",
    "init",
    "privileged",
    "network_mode",
    "pid_mode",
    "ipc_mode",
    "devices",
    "placement",
)

# Docker's default capabilities: adding one back (after cap_drop ALL) grants nothing new.
SAFE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "NET_RAW",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
MIN_MEMORY_BYTES = 6 * 1024 * 1024  # Docker refuses less than 6 MiB
MAX_MEMORY_BYTES = 1024**4
_MEMORY_TEXT = re.compile(r"^([0-9]{1,15})([kKMGT]i?|[kKMGT]?)$")
_UNITS = {
    "": 1,
    "k": 1000,
    "K": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "ki": 1024,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}
_CLEAN_PATH = re.compile(r"^(/[^/\x00-\x1f]+)+$")
_DOT_SEGMENT = re.compile(r"(^|/)\.\.?(/|$)")
_DOCKER_PATHS = frozenset(
    {
        "/var",
        "/var/run",
        "/run",
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/var/run/docker",
        "/run/docker",
        "/var/lib/docker",
    }
)


def memory_bytes(value: int | str) -> int | None:
    """Bytes from 123, "123", "512Mi", "1Gi", "256M": None if it is not such a quantity."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    match = _MEMORY_TEXT.match(value)
    if match is None:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)]


def clean_absolute_path(value: str) -> bool:
    """An absolute path with no empty, "." or ".." segment and no trailing "/"."""
    return value == "/" or (bool(_CLEAN_PATH.match(value)) and not _DOT_SEGMENT.search(value))


def bind_permission(source: str) -> str | None:
    """The policy permission a bind of `source` needs: `/` owns the host's files, the
    Docker socket (or a directory holding it) the host's engine."""
    if source == "/":
        return "host_root"
    if (
        source in _DOCKER_PATHS
        or source.startswith("/var/lib/docker/")
        or source.endswith("docker.sock")
        or source.endswith("/containerd.sock")
    ):
        return "docker_socket"
    return None


class Resources(BaseModel):
    """Limits of one replica: memory in bytes (or "512Mi"), CPUs (0.5), process count."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory: int | str | None = None
    cpus: float | None = Field(default=None, ge=0.01, le=1024)
    pids: int | None = Field(default=None, ge=1, le=4_194_304)

    @field_validator("memory")
    @classmethod
    def _quantity(cls, value: int | str | None) -> int | str | None:
        if value is None:
            return None
        size = memory_bytes(value)
        if size is None or not MIN_MEMORY_BYTES <= size <= MAX_MEMORY_BYTES:
            raise ValueError(
                'must be bytes or a quantity like "512Mi", "1Gi", "256M", from 6Mi to 1Ti'
            )
        return value

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else memory_bytes(self.memory)


class Volume(BaseModel):
    """A named volume (`name`: made by Berth, shared by the replicas, kept across
    replacements) or a bind of a host path (`source`, read-only unless asked)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, pattern=NAME_REGEX)
    source: str | None = None
    target: str
    read_only: bool | None = None
    retain: bool | None = None  # named volumes: kept when the deployment is deleted (default)
    # Named volumes: the volume driver (default "local": on a swarm, one node's).
    driver: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._/:-]{0,127}$")

    @field_validator("source")
    @classmethod
    def _host_path(cls, value: str | None) -> str | None:
        if value is not None and not clean_absolute_path(value):
            raise ValueError('must be an absolute host path without "..", "." or empty segments')
        return value

    @field_validator("target")
    @classmethod
    def _container_path(cls, value: str) -> str:
        if value == "/" or not clean_absolute_path(value):
            raise ValueError('must be an absolute path in the container, not "/", without ".."')
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Volume:
        if (self.name is None) == (self.source is None):
            raise ValueError('set exactly one of "name" (a named volume) and "source" (a bind)')
        if self.source is not None and self.retain is not None:
            raise ValueError("retain: applies to named volumes only")
        if self.source is not None and self.driver is not None:
            raise ValueError("driver: applies to named volumes only")
        return self

    @property
    def writable(self) -> bool:
        """Binds are read-only unless asked; named volumes are writable unless asked."""
        if self.read_only is not None:
            return not self.read_only
        return self.source is None

    @property
    def retained(self) -> bool:
        return self.retain is not False


def check_bind_sources(volumes: Sequence[Volume], allowed: Sequence[str]) -> None:
    """Raise InvalidSpec, naming the field, for a bind of a path outside `allowed`
    (BERTH_ALLOWED_BIND_PATHS): the database cannot know the host's allow-list."""
    for index, volume in enumerate(volumes):
        if volume.source is None:
            continue
        if not any(_under(volume.source, root) for root in allowed):
            listed = ", ".join(allowed) if allowed else "none set"
            raise InvalidSpec(
                f"volumes[{index}].source: {volume.source} is not under "
                f"BERTH_ALLOWED_BIND_PATHS ({listed})"
            )


def _under(path: str, root: str) -> bool:
    root = posixpath.normpath(root)
    return root == "/" or path == root or path.startswith(root.rstrip("/") + "/")
