"""The deployment spec: its validated model, its fields declared once, and its hash.

Pure: no I/O. Called by the CLI (`berth apply` validates files before they reach the
database), by the reconciler (rows are parsed before anything is created) and by
`controller.model.requests`, which turns a spec into the `ReplicaRequest` of one replica
for a runtime. `SPEC_FIELDS` is the one list of a deployment's fields. The database
enforces the same rules with its own constraints (`sql/migrations/0001_schema.sql`); this
model keeps the error messages equally precise on the client side.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from controller.model.errors import InvalidSpec
from controller.model.names import (
    HOST_PATTERN,
    NAME_PATTERN,
    NAME_REGEX,
    NAME_RULE,
    RESERVED_LABEL_PREFIX,
)
from controller.model.nodes import Placement
from controller.model.source import SourceSpec
from controller.model.workload import WORKLOAD_FIELDS, Resources, Volume

MAX_REPLICAS = 1000
# The same limits as the database's (sql/migrations/0011_input_limits.sql; a test keeps them
# equal): a value Docker would pass to exec() must stay well inside ARG_MAX.
ENV_KEY_REGEX = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_ENV_VALUE_BYTES = 32_768
MAX_ENV_BYTES = 131_072
MAX_LABEL_KEY_BYTES = 256
MAX_LABEL_VALUE_BYTES = 4_096
USER_REGEX = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$"
CAPABILITY_REGEX = r"^[A-Z][A-Z0-9_]{1,30}$"


class SecretRef(BaseModel):
    """An env value held in the `secrets` table: `{"secret": "stripe-key"}`. The spec never
    holds the value; the daemon reads it only to create a container."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: str = Field(pattern=NAME_REGEX)

    def __str__(self) -> str:
        return f"<secret:{self.secret}>"


class Port(BaseModel):
    """One published port: `container` inside, `host` outside (null = Docker picks one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    container: int = Field(ge=1, le=65535)
    host: int | None = Field(default=None, ge=1, le=65535)
    protocol: Literal["tcp", "udp"] = "tcp"


class RouteTls(BaseModel):
    """HTTPS for a route's host (`controller.loop.certificates`): a certificate obtained and
    renewed through ACME (`acme`), signed by Berth's own CA for local names (`internal`), or
    the operator's, held in two secrets (`files`: `certificate_secret`, PEM chain, and
    `key_secret`); plain HTTP redirected to HTTPS unless told not to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: Literal["acme", "internal", "files"] = "acme"
    redirect_http: bool = True
    certificate_secret: str | None = Field(default=None, pattern=NAME_REGEX)
    key_secret: str | None = Field(default=None, pattern=NAME_REGEX)

    @model_validator(mode="after")
    def _secrets_for_files(self) -> RouteTls:
        named = self.certificate_secret is not None or self.key_secret is not None
        if self.issuer == "files" and (self.certificate_secret is None or self.key_secret is None):
            raise ValueError('issuer "files" needs certificate_secret and key_secret')
        if self.issuer != "files" and named:
            raise ValueError('certificate_secret and key_secret go with issuer "files" only')
        return self


class Route(BaseModel):
    """HTTP requests for `host` (under `path_prefix`) go to ready replicas on `port`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(pattern=HOST_PATTERN, max_length=253)
    port: int = Field(ge=1, le=65535)
    path_prefix: str = Field(default="/", pattern=r"^/[A-Za-z0-9._~/-]*$")
    tls: RouteTls | None = None


class Rollout(BaseModel):
    """How a new revision replaces the old one (`deployments.rollout`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Literal["start-first", "stop-first"] = "start-first"
    max_surge: int = Field(default=1, ge=0, le=1000)
    max_unavailable: int = Field(default=0, ge=0, le=1000)
    progress_deadline_s: float = Field(default=120.0, gt=0)
    auto_rollback: bool = True
    drain_s: float = Field(default=1.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _can_move(self) -> Rollout:
        if self.strategy == "start-first" and self.max_surge + self.max_unavailable == 0:
            raise ValueError("max_surge and max_unavailable cannot both be 0")
        return self


class HealthCheck(BaseModel):
    """Docker healthcheck: `test` is `["CMD", ...]` or `["CMD-SHELL", "..."]`; times in seconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    test: list[str] = Field(min_length=2)
    interval_s: float = Field(default=30.0, gt=0)
    timeout_s: float = Field(default=30.0, gt=0)
    retries: int = Field(default=3, ge=1)
    start_period_s: float = Field(default=0.0, ge=0)

    @field_validator("test")
    @classmethod
    def _test_form(cls, value: list[str]) -> list[str]:
        if value[0] not in ("CMD", "CMD-SHELL"):
            raise ValueError('must start with "CMD" or "CMD-SHELL"')
        if value[0] == "CMD-SHELL" and len(value) != 2:
            raise ValueError('"CMD-SHELL" takes exactly one shell string')
        return value


class DeploymentSpec(BaseModel):
    """What an operator declares: one row of `deployments`, minus bookkeeping columns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    # Exactly one of `image` and `source`: a source deployment runs the image its build made.
    image: str | None = Field(default=None, min_length=1)
    source: SourceSpec | None = None
    priority: int = Field(default=0, ge=-1000, le=1000)
    command: list[str] | None = None
    env: dict[str, str | SecretRef] = Field(default_factory=dict)
    ports: list[Port] = Field(default_factory=list)
    replicas: int = Field(default=1, ge=0, le=MAX_REPLICAS)
    healthcheck: HealthCheck | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    routes: list[Route] = Field(default_factory=list)
    rollout: Rollout = Field(default_factory=Rollout)
    # Production workloads (schema 12). Their defaults are what Docker did before, and the
    # spec hash leaves a default out: upgrading Berth replaces no container.
    resources: Resources = Field(default_factory=Resources)
    volumes: list[Volume] = Field(default_factory=list)
    networks: list[Annotated[str, Field(pattern=NAME_REGEX)]] = Field(default_factory=list)
    stop_signal: str | None = Field(default=None, pattern=r"^(SIG[A-Z0-9+-]{2,12}|[0-9]{1,2})$")
    stop_grace_s: float | None = Field(default=None, ge=0, le=3600)
    user: str | None = Field(default=None, pattern=USER_REGEX)
    read_only: bool = False
    cap_add: list[Annotated[str, Field(pattern=CAPABILITY_REGEX)]] = Field(default_factory=list)
    cap_drop: list[Annotated[str, Field(pattern=CAPABILITY_REGEX)]] = Field(default_factory=list)
    init: bool = False
    # Refused by the database unless an administrator allowed them in `policy`.
    privileged: bool = False
    network_mode: Literal["host", "none"] | None = None
    pid_mode: Literal["host"] | None = None
    ipc_mode: Literal["host", "private", "shareable"] | None = None
    devices: list[Annotated[str, Field(pattern=r"^/dev/[A-Za-z0-9_./-]+$")]] = Field(
        default_factory=list
    )
    # Where replicas may run on a runtime with nodes (schema 18; the docker runtime refuses
    # any but the default).
    placement: Placement = Field(default_factory=Placement)
    # The current version of each secret `env` references (not a column: the daemon reads
    # it with the row). Part of the spec hash, so a changed value means new containers.
    secret_versions: dict[str, int] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _fixed_ports_recreate(cls, data: Any) -> Any:
        """A fixed host port cannot be held by two revisions: unless told otherwise, such a
        deployment is updated stop-first (the database does the same)."""
        if isinstance(data, dict) and any(
            isinstance(port, dict) and port.get("host") is not None
            for port in data.get("ports") or ()
        ):
            rollout = data.get("rollout") or {}
            if isinstance(rollout, dict) and "strategy" not in rollout:
                data = {**data, "rollout": {**rollout, "strategy": "stop-first"}}
        return data

    @field_validator("name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(NAME_RULE)
        return value

    @field_validator("image")
    @classmethod
    def _image_text(cls, value: str | None) -> str | None:
        if value is not None and any(ch.isspace() for ch in value):
            raise ValueError("must not contain whitespace")
        return value

    @field_validator("labels")
    @classmethod
    def _unreserved_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if key.startswith(RESERVED_LABEL_PREFIX):
                raise ValueError(
                    f"label {key!r} uses the reserved prefix {RESERVED_LABEL_PREFIX!r}"
                )
            if len(key.encode()) > MAX_LABEL_KEY_BYTES:
                raise ValueError(f"a key of {len(key.encode())} bytes; at most 256")
            if len(text.encode()) > MAX_LABEL_VALUE_BYTES:
                raise ValueError(f"{key}: is {len(text.encode())} bytes; at most 4096")
        return value

    @field_validator("env")
    @classmethod
    def _env_variables(cls, value: dict[str, str | SecretRef]) -> dict[str, str | SecretRef]:
        total = 0
        for key, item in value.items():
            if not re.match(ENV_KEY_REGEX, key):
                raise ValueError(f"{key}: keys must be variable names (letters, digits and _)")
            text = item if isinstance(item, str) else json.dumps({"secret": item.secret})
            size = len(text.encode())
            if size > MAX_ENV_VALUE_BYTES:
                raise ValueError(f"{key}: is {size} bytes; one value may have at most 32768")
            total += len(key.encode()) + size + 2
        if total > MAX_ENV_BYTES:
            raise ValueError(f"is {total} bytes in all; at most 131072")
        return value

    @model_validator(mode="after")
    def _image_or_source(self) -> DeploymentSpec:
        if self.image is not None and self.source is not None:
            raise ValueError("source: set exactly one of image and source, not both")
        if self.image is None and self.source is None:
            raise ValueError("image: is required unless source is set")
        return self

    @model_validator(mode="after")
    def _fixed_host_ports_need_one_replica(self) -> DeploymentSpec:
        if self.replicas > 1 and any(port.host is not None for port in self.ports):
            raise ValueError("ports: a fixed host port can serve only one replica (replicas <= 1)")
        if self.rollout.strategy != "stop-first" and any(p.host is not None for p in self.ports):
            raise ValueError(
                'rollout.strategy: must be "stop-first" where a fixed host port is published'
            )
        return self

    @model_validator(mode="after")
    def _workload_consistent(self) -> DeploymentSpec:
        targets = [volume.target for volume in self.volumes]
        if len(set(targets)) != len(targets):
            raise ValueError("volumes: a target is mounted twice")
        if len(set(self.networks)) != len(self.networks):
            raise ValueError("networks: a network is listed twice")
        if self.networks and self.network_mode is not None:
            raise ValueError(f"networks: cannot be joined with network_mode {self.network_mode}")
        if self.network_mode is not None and (self.ports or self.routes):
            raise ValueError(f"ports: cannot be published with network_mode {self.network_mode}")
        return self

    @property
    def spec_hash(self) -> str:
        return spec_hash(self)

    @property
    def secret_names(self) -> set[str]:
        return {item.secret for item in self.env.values() if isinstance(item, SecretRef)}

    def with_secret_versions(self, versions: dict[str, int]) -> DeploymentSpec:
        """This spec with the current versions of the secrets it references."""
        wanted = {name: versions.get(name, 0) for name in sorted(self.secret_names)}
        return self.model_copy(update={"secret_versions": wanted})

    def environment(self, secret_values: dict[str, str]) -> dict[str, str]:
        """`env` with each secret reference replaced by its value; InvalidSpec names the
        variable whose secret is missing."""
        resolved = {}
        for key, item in self.env.items():
            if isinstance(item, str):
                resolved[key] = item
            elif item.secret in secret_values:
                resolved[key] = secret_values[item.secret]
            else:
                raise InvalidSpec(f"env.{key}: secret {item.secret!r} does not exist")
        return resolved

    def shown_env(self) -> dict[str, str]:
        """`env` fit to show: a secret reference as `<secret:NAME>`."""
        return {key: str(item) for key, item in self.env.items()}

    def with_image(self, image: str) -> DeploymentSpec:
        """This spec running `image` (a source deployment's built image): what the planner
        and the executor see once the build is done."""
        return self.model_copy(update={"image": image, "source": None})


def spec_hash(spec: DeploymentSpec) -> str:
    """Hash of everything that shapes a container; not `replicas` (scaling replaces nothing)
    and not the source (its built image stands for it) nor the build priority."""
    shaped = spec.model_dump(
        mode="json", exclude={"name", "replicas", "source", "priority", "routes", "rollout"}
    )
    for field in WORKLOAD_FIELDS:  # at their defaults they shape nothing new
        if shaped[field] == _WORKLOAD_DEFAULTS[field]:
            del shaped[field]
    if spec.secret_versions:  # a secret's new value: new containers
        shaped["secret_versions"] = spec.secret_versions
    if "volumes" in shaped:  # kept on delete or not: no container changes for it
        shaped["volumes"] = [
            {key: value for key, value in volume.items() if key != "retain"}
            for volume in shaped["volumes"]
        ]
    if spec.routes:  # the ports routed to are published on loopback: they shape a container
        shaped["route_ports"] = sorted(route_ports(spec))
    canonical = json.dumps(shaped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# The deployment's fields, declared once: `DeploymentSpec` above. Every other list is derived
# from these (the records' columns, the fakes') or held to them by tests/unit/test_fields.py
# (the SQL's column lists, `berth_workload_of`, `berth_checked_spec`, the migrations'
# columns, docs/sql-interface.md): a field added in one place only fails it.
SPEC_FIELDS: tuple[str, ...] = tuple(
    field for field in DeploymentSpec.model_fields if field not in ("name", "secret_versions")
)
# Those the full read fetches as columns one by one; the workload fields come as one object.
COLUMN_FIELDS: tuple[str, ...] = tuple(f for f in SPEC_FIELDS if f not in WORKLOAD_FIELDS)

_WORKLOAD_DEFAULTS = {
    field: DeploymentSpec.model_validate({"name": "x", "image": "x"}).model_dump(mode="json")[field]
    for field in WORKLOAD_FIELDS
}


def route_ports(spec: DeploymentSpec) -> set[int]:
    """Container ports the proxy reaches that `ports` does not publish already: Berth
    publishes them on 127.0.0.1 (a host port Docker picks), for the proxy only."""
    published = {port.container for port in spec.ports if port.protocol == "tcp"}
    return {route.port for route in spec.routes} - published


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, each naming its field path like `ports[0].container`."""
    lines = []
    for problem in error.errors():
        path = ""
        for part in problem["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        lines.append(f"{path or 'spec'}: {problem['msg']}")
    return "; ".join(lines)


def parse_spec(data: dict[str, Any]) -> DeploymentSpec:
    """Validate a mapping into a spec, or raise InvalidSpec naming each bad field."""
    try:
        return DeploymentSpec.model_validate(data)
    except ValidationError as error:
        raise InvalidSpec(describe_validation_error(error)) from error
