"""Containers as Berth sees them: typed values the Docker gateway hands out and takes in.

Pure data. `ObservedContainer` is one entry of the container list (the planner's input),
`ContainerState` what an inspect tells about a failed replica, `ContainerRequest` the
replica Berth wants created (the Docker gateway turns it into Docker's arguments).
Produced by `controller.gateways.docker_engine` and `controller.model.spec`; read by the
planner, the reconciler and the restart gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.model.names import DEFAULT_CLUSTER


@dataclass(frozen=True)
class ObservedContainer:
    """One container as the Docker list call reports it, with Berth's labels parsed."""

    id: str
    name: str
    deployment: str | None
    replica: int | None
    spec_hash: str | None
    cluster: str = DEFAULT_CLUSTER
    state: str = "running"
    health: str = "none"
    created: int = 0
    # Berth has a record of creating it (berth_containers): only such a container is adopted
    # as a replica; another one carrying Berth's labels is replaced like a stale one.
    recorded: bool = True
    # Published TCP ports: (container port, host IP, host port), as the list call shows them.
    ports: tuple[tuple[int, str, int], ...] = ()

    def host_port(self, container_port: int) -> tuple[str, int] | None:
        """Where the host reaches `container_port` (loopback for 0.0.0.0 bindings)."""
        for private, ip, public in self.ports:
            if private == container_port:
                return ("127.0.0.1" if ip in ("0.0.0.0", "", "::") else ip), public
        return None

    @property
    def ready(self) -> bool:
        return self.recorded and self.state == "running" and self.health in ("none", "healthy")


@dataclass(frozen=True)
class ContainerState:
    """What an inspect tells about one container: why it stopped or is unhealthy."""

    status: str = "unknown"
    exit_code: int | None = None
    oom_killed: bool = False
    health_output: str = ""
    finished_at: float | None = None  # unix seconds of the last exit, if it ever exited
    started_at: float | None = None  # unix seconds of the last start


@dataclass(frozen=True)
class PublishedPort:
    container: int
    protocol: str = "tcp"
    host: int | None = None  # None: Docker picks a free port
    host_ip: str | None = None  # None: every interface; "127.0.0.1": loopback only


@dataclass(frozen=True)
class HealthProbe:
    """A Docker healthcheck; times in seconds (the gateway converts them)."""

    test: tuple[str, ...]
    interval_s: float
    timeout_s: float
    retries: int
    start_period_s: float


@dataclass(frozen=True)
class Mount:
    """A named volume (`kind` "volume", `source` its Docker name) or a bind of a host path."""

    kind: str
    source: str
    target: str
    read_only: bool


@dataclass(frozen=True)
class Limits:
    """Resource limits of one container (None: Docker's default, unlimited)."""

    memory_bytes: int | None = None
    nano_cpus: int | None = None
    pids: int | None = None


@dataclass(frozen=True)
class ContainerRequest:
    """One replica to create: everything Docker needs, in Berth's words.

    `environment` may hold secret values: it is left out of the repr, so a request in a log
    line or a traceback never shows them."""

    name: str
    image: str
    command: tuple[str, ...] | None
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    labels: dict[str, str] = field(default_factory=dict)
    ports: tuple[PublishedPort, ...] = ()
    healthcheck: HealthProbe | None = None
    mounts: tuple[Mount, ...] = ()
    # Docker networks to join (the first at create, the others before start), under aliases.
    networks: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    limits: Limits = Limits()
    stop_signal: str | None = None
    stop_timeout_s: int | None = None
    user: str | None = None
    read_only: bool = False
    cap_add: tuple[str, ...] = ()
    cap_drop: tuple[str, ...] = ()
    init: bool = False
    privileged: bool = False
    network_mode: str | None = None
    pid_mode: str | None = None
    ipc_mode: str | None = None
    devices: tuple[str, ...] = ()
