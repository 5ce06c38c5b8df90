"""Replicas as the loop sees them: the vocabulary of the runtime port, whatever runs them.

Pure data. `ObservedReplica` is one replica as a runtime reports it (its deployment, slot,
revision, state, health, where it runs and the address the proxy reaches it at),
`ReplicaInspection` what a runtime tells about a failed replica, `ReplicaRequest` "run this
revision's replica in this slot" (a runtime turns it into its own arguments: the docker
runtime into a container, `controller.gateways.docker_runtime`). `RunState` and `Health`
are the one vocabulary of a replica's state; `tests/unit/test_vocabulary.py` holds the
docker runtime's parsing to it. Produced by the runtimes and `controller.model.spec`; read
by the planner, the reconciler, the restart gate, intents and routes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from controller.model.names import DEFAULT_CLUSTER, LOCAL_NODE
from controller.model.nodes import PlacementRules


class RunState(StrEnum):
    """Where a replica's process is (Docker's container states; a runtime maps its own)."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    RESTARTING = "restarting"
    REMOVING = "removing"
    EXITED = "exited"
    DEAD = "dead"
    UNKNOWN = "unknown"  # a state the runtime reported that Berth does not know


# A replica that is not running but can be started where it stands (unpaused if paused).
STARTABLE_STATES = frozenset({RunState.CREATED, RunState.EXITED, RunState.PAUSED})


def run_state(text: str) -> RunState:
    """A runtime's state word as a `RunState` (UNKNOWN for one Berth does not know)."""
    try:
        return RunState(text)
    except ValueError:
        return RunState.UNKNOWN


class Health(StrEnum):
    """A replica's healthcheck verdict; NONE without a healthcheck."""

    NONE = "none"
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class RestartReason(StrEnum):
    """Why Berth restarts a replica (the label `reason` of berth_container_restarts_total)."""

    EXITED = "exited"  # it stopped while it should run
    UNHEALTHY = "unhealthy"  # it runs, and its healthcheck says unhealthy


@dataclass(frozen=True)
class Endpoint:
    """Where a replica's `container_port` is reached from Berth's proxy: `host`:`port`."""

    container_port: int
    host: str
    port: int


@dataclass(frozen=True)
class ObservedReplica:
    """One replica as its runtime reports it, with Berth's labels parsed.

    `replica` is its slot, `spec_hash` its revision's hash; `node` where it runs and
    `restarts` how often the runtime itself restarted it (the docker runtime: this engine,
    and 0: Berth restarts its containers itself)."""

    id: str
    name: str
    deployment: str | None
    replica: int | None
    spec_hash: str | None
    cluster: str = DEFAULT_CLUSTER
    state: RunState = RunState.RUNNING
    health: Health = Health.NONE
    created: int = 0
    # Berth has a record of creating it (berth_containers): only such a replica is adopted;
    # another one carrying Berth's labels is replaced like a stale one.
    recorded: bool = True
    # Its published TCP ports, as reachable addresses (the runtime resolved them).
    endpoints: tuple[Endpoint, ...] = ()
    node: str = LOCAL_NODE
    restarts: int = 0
    # The runtime's own words on why it is not running (Swarm's task error: "no suitable
    # node (...)", "No such image: ..."), and the node it left when that node was lost.
    note: str = ""
    moved_from: str = ""
    # Its `io.berth.proof` label: whether Berth made it, should its record be lost
    # (`controller.model.provenance`).
    proof: str = ""

    def address(self, container_port: int) -> tuple[str, int] | None:
        """Where the proxy reaches `container_port`, if it is published."""
        for endpoint in self.endpoints:
            if endpoint.container_port == container_port:
                return endpoint.host, endpoint.port
        return None

    @property
    def ready(self) -> bool:
        return (
            self.recorded
            and self.state == RunState.RUNNING
            and self.health in (Health.NONE, Health.HEALTHY)
        )


@dataclass(frozen=True)
class ReplicaInspection:
    """What a runtime tells about one replica: why it stopped or is unhealthy."""

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
    volume: str = ""  # a named volume's name in the spec (`volumes[].name`)
    driver: str = "local"  # a named volume's driver (`volumes[].driver`)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one container (None: Docker's default, unlimited)."""

    memory_bytes: int | None = None
    nano_cpus: int | None = None
    pids: int | None = None


@dataclass(frozen=True)
class ReplicaRequest:
    """Run this revision's replica in this slot: everything a runtime needs, in Berth's words.

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
    # Where it may run, on a runtime with nodes (`controller.model.nodes.PlacementRules`).
    placement: PlacementRules = field(default_factory=PlacementRules)
    # The deployment's replica count: a runtime whose volumes live on one node refuses more
    # than one replica sharing a node-local volume.
    deployment_replicas: int = 1


def replica_rows(replicas: list[ObservedReplica]) -> list[dict[str, object]]:
    """Where each replica runs, as the `replicas` view shows it (one dict per replica, in
    slot order): what the leader records with a deployment's status."""
    ordered = sorted(replicas, key=lambda r: (r.replica if r.replica is not None else -1, r.id))
    return [
        {
            "id": r.id[:12],
            "revision": (r.spec_hash or "")[:8],
            "slot": r.replica,
            "node": r.node,
            "state": str(r.state),
            "health": str(r.health),
            "address": ",".join(f"{e.host or '127.0.0.1'}:{e.port}" for e in r.endpoints),
            "restarts": r.restarts,
            "note": r.note[:300],
        }
        for r in ordered
    ]
