"""In-memory fakes of the two gateways and of leadership, for loop-level unit tests.

`FakeStore` answers the calls of `controller.loop.ports.StateStore` as the named queries in
controller/sql/queries.sql do (fencing by term, phase_updated_at moving only on a phase
change, the stuck count per generation and its reset on a settled phase), and
`FakeRuntime` those of `Runtime` as the Docker gateway does (idempotent create by
name, start of a running container, remove of a missing one). `Cluster` wires them with
the real Reconciler, FullResync and Controller on one fake clock, and drives the queue
single-threaded, advancing the clock to each delayed requeue, so a minute of the loop's
life runs in milliseconds.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.gateways.docker_runtime import reads_one_by_one
from controller.loop import faults
from controller.loop.controller import Controller
from controller.loop.engine import EngineHistory
from controller.loop.ports import Stores
from controller.loop.reconciler import Reconciler
from controller.loop.resync import FullResync, Release
from controller.loop.stops import BackgroundStops
from controller.loop.workqueue import WorkQueue
from controller.model.builds import BuildRecord, BuildStatus
from controller.model.errors import (
    BerthError,
    DatabaseRejected,
    Deposed,
    DockerConflict,
    DockerUnavailable,
    ImageUnavailable,
    NameTaken,
    ReplicaVanished,
)
from controller.model.names import (
    LABEL_CLUSTER,
    LABEL_DEPLOYMENT,
    LABEL_PROOF,
    LABEL_REPLICA,
    LABEL_SPEC_HASH,
    LOCAL_NODE,
)
from controller.model.nodes import Availability, NodeState, ObservedNode
from controller.model.outcome import Outcome
from controller.model.phases import SETTLED_PHASES, Phase
from controller.model.provenance import CreationRecords
from controller.model.records import (
    DeploymentRecord,
    Event,
    Fence,
    Intent,
    MutationAction,
    MutationRecord,
    Resolution,
    StatusChange,
    StatusWrite,
)
from controller.model.replicas import (
    Health,
    ObservedReplica,
    ReplicaInspection,
    ReplicaRequest,
    RunState,
)
from controller.model.settings import Settings
from controller.model.spec import COLUMN_FIELDS, SPEC_FIELDS
from controller.model.workload import WORKLOAD_FIELDS

EPOCH = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


# The deployments table's column defaults (migration 1 and later), for the fields the full
# read fetches one by one; tests/contract holds the fake's reads equal to the database's.
COLUMN_DEFAULTS: dict[str, Any] = {
    "image": None,
    "source": None,
    "priority": 0,
    "command": None,
    "env": {},
    "ports": [],
    "replicas": 1,
    "healthcheck": None,
    "labels": {},
    "routes": [],
    "rollout": {},
}


class SimulatedCrash(BaseException):
    """The process died here (a BaseException, so no `except Exception` in the loop stops it)."""


class FakeClock:
    """One clock for wall time and monotonic time; moves only when a test moves it."""

    def __init__(self) -> None:
        self.elapsed = 0.0

    def wall(self) -> datetime:
        return EPOCH + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    def advance(self, seconds: float) -> None:
        self.elapsed += max(0.0, seconds)


# --- Postgres -----------------------------------------------------------------------------------
@dataclass
class StoredStatus:
    write: StatusWrite
    phase_updated_at: datetime
    leader_term: int
    stuck_resumes: int = 0
    stuck_generation: int | None = None


@dataclass
class StoredIntent:
    id: int
    term: int
    deployment: str
    action: MutationAction
    target: str
    outcome: str | None = None
    resolution: str | None = None
    resolved_by_term: int | None = None


class FakeStore:
    """The rows of deployments, deployment_status, deployment_events and berth_mutations."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.term = 1  # berth_leader.term: a claim by a new leader bumps it
        self.holder: str | None = None  # berth_leader.holder_id, when a test names one
        self.specs: dict[str, dict[str, Any]] = {}
        self.generations: dict[str, int] = {}
        self.statuses: dict[str, StoredStatus] = {}
        self.events: list[tuple[int, Event]] = []
        self.intents: list[StoredIntent] = []
        self.container_records: dict[str, str] = {}  # berth_containers: id -> deployment
        self.container_names: dict[str, str] = {}  # berth_containers: id -> name
        self.proof_key_bytes = b"fake proof key"  # berth_proof_key
        self.status_writes = 0
        self.builds: list[BuildRecord] = []  # the builds table, oldest first
        # deployment_revisions: per deployment, rows of (revision, spec, hash, outcome)
        self.revisions: dict[str, list[dict[str, Any]]] = {}
        self.serving: dict[str, int] = {}  # deployment_status.serving_revision
        self.secrets: dict[str, tuple[str, int]] = {}  # secrets: name -> (value, version)
        self._lock = threading.Lock()

    # operators' SQL: INSERT/UPDATE/DELETE on deployments (the generation trigger)
    def apply(self, name: str, **spec: Any) -> None:
        unknown = set(spec) - set(SPEC_FIELDS)
        assert not unknown, f"not a deployment field: {unknown}"
        row = {"name": name, **COLUMN_DEFAULTS} | spec
        before = self.specs.get(name)
        if before == row:
            return
        if before is not None and {**before, "priority": 0} == {**row, "priority": 0}:
            self.specs[name] = row  # the build priority is not the spec: no new generation
            return
        self.generations[name] = self.generations.get(name, 0) + 1
        self.specs[name] = row

    def delete(self, name: str) -> None:
        self.specs.pop(name, None)

    def set_secret(self, name: str, value: str) -> None:
        """INSERT or UPDATE of a secret: a new value bumps the generation of its users."""
        old = self.secrets.get(name)
        if old is not None and old[0] == value:
            return
        self.secrets[name] = (value, old[1] + 1 if old else 1)
        if old is not None:
            for user, spec in self.specs.items():
                if name in self._secret_refs(spec):
                    self.generations[user] += 1

    @staticmethod
    def _secret_refs(spec: dict[str, Any]) -> set[str]:
        return {v["secret"] for v in spec.get("env", {}).values() if isinstance(v, dict)}

    def status(self, name: str) -> StatusWrite:
        return self.statuses[name].write

    def phase_events(self, name: str) -> list[Phase | None]:
        return [e.phase_to for _, e in self.events if e.deployment == name and e.kind == "phase"]

    # StateStore -------------------------------------------------------------------------------
    def fetch_all(self) -> list[DeploymentRecord]:
        names = sorted(set(self.specs) | set(self.statuses))
        return [record for name in names if (record := self.fetch_one(name)) is not None]

    def fetch_one(self, name: str) -> DeploymentRecord | None:
        spec = self.specs.get(name)
        stored = self.statuses.get(name)
        if spec is None and stored is None:
            return None
        generation = self.generations.get(name, 0) if spec is not None else 0
        status = stored.write if stored else None
        stuck = 0
        if stored is not None and stored.stuck_generation == generation:
            stuck = stored.stuck_resumes
        return DeploymentRecord(
            name=name,
            present=spec is not None,
            spec=self._read_spec(name, spec) if spec else None,
            generation=generation,
            phase=status.phase if status else None,
            phase_updated_at=stored.phase_updated_at if stored else None,
            observed_generation=status.observed_generation if status else 0,
            ready_replicas=status.ready_replicas if status else 0,
            failure_kind=status.failure_kind if status else None,
            attempts=status.attempts if status else 0,
            next_attempt_at=status.next_attempt_at if status else None,
            leader_term=stored.leader_term if stored else 0,
            phase_progress=status.phase_progress if status else 0,
            message=status.message if status else "",
            phase_metadata=dict(status.phase_metadata) if status else {},
            restart_count=status.restart_count if status else 0,
            replica_restarts=dict(status.replica_restarts) if status else {},
            observed_replicas=list(status.replicas) if status else [],
            stuck_resumes=stuck,
            creation_records=CreationRecords(
                ids=frozenset(
                    cid for cid, owner in self.container_records.items() if owner == name
                ),
                names=frozenset(
                    self.container_names[cid]
                    for cid, owner in self.container_records.items()
                    if owner == name
                ),
                pending=frozenset(
                    i.target
                    for i in self.intents
                    if i.deployment == name
                    and i.action == "create"
                    and i.outcome is None
                    and i.resolution is None
                ),
                since=0.0,  # every container the fakes make needs a record
            ),
            build_queued=any(
                b.deployment == name and b.status == BuildStatus.QUEUED for b in self.builds
            ),
            serving_revision=self.serving.get(name),
            serving_spec=serving["spec"] if (serving := self._serving_row(name)) else None,
            serving_hash=serving["spec_hash"] if serving else None,
            rollout_started_at=status.rollout_started_at if status else None,
            secret_versions={
                ref: self.secrets[ref][1]
                for ref in (self._secret_refs(spec) if spec else set())
                if ref in self.secrets
            },
        )

    @staticmethod
    def _read_spec(name: str, row: dict[str, Any]) -> dict[str, Any]:
        """The row as the full read gives it (`select_deployment`): every column field, and
        the workload fields it sets apart from their defaults (`berth_workload_of`)."""
        workload = {
            key: row[key] for key in WORKLOAD_FIELDS if row.get(key) not in (None, False, [], {})
        }
        return {"name": name, **{key: row[key] for key in COLUMN_FIELDS}, **workload}

    def secret_values(self, names: Collection[str]) -> dict[str, str]:
        return {name: self.secrets[name][0] for name in names if name in self.secrets}

    def _serving_row(self, name: str) -> dict[str, Any] | None:
        number = self.serving.get(name)
        rows = [r for r in self.revisions.get(name, []) if r["revision"] == number]
        return rows[0] if rows else None

    def _fence(self, fence: Fence) -> None:
        if fence.term != self.term or (self.holder is not None and fence.node_id != self.holder):
            raise Deposed(f"term {fence.term} of cluster {fence.cluster!r} is over, or not ours")
        fence.check_trust()

    def record(
        self,
        fence: Fence,
        status: StatusWrite | None,
        events: Sequence[Event] = (),
        create_row: bool = False,
    ) -> None:
        with self._lock:
            self._fence(fence)
            self._write(fence, status, events, create_row)

    def _write(
        self, fence: Fence, status: StatusWrite | None, events: Sequence[Event], create_row: bool
    ) -> None:
        """A status row and its events (the lock held, the fence checked)."""
        if status is not None:
            if status.phase == Phase.ACTIVE and status.phase_progress != 100:
                raise DatabaseRejected(  # schema 25's CHECK
                    'violates check constraint "deployment_status_active_is_complete"'
                )
            stored = self.statuses.get(status.name)
            if stored is None:
                if not create_row:
                    return  # UPDATE of a missing row: nothing
                stored = StoredStatus(
                    StatusWrite(status.name, Phase.QUEUED, 0, 0, status.desired_replicas, 0),
                    self.clock.wall(),
                    fence.term,
                )
                self.statuses[status.name] = stored
            if stored.write.phase != status.phase:
                stored.phase_updated_at = self.clock.wall()
            if status.phase in SETTLED_PHASES:
                stored.stuck_resumes = 0
            stored.write = status
            stored.leader_term = fence.term
            self.status_writes += 1
        self.events.extend((fence.term, event) for event in events)

    def forget(self, fence: Fence, name: str, events: Sequence[Event] = ()) -> None:
        with self._lock:
            self._fence(fence)
            self.statuses.pop(name, None)
            self.events.extend((fence.term, event) for event in events)

    @contextmanager
    def mutation(
        self,
        fence: Fence,
        deployment: str,
        action: MutationAction,
        target: str,
        status: StatusChange | None = None,
    ) -> Iterator[MutationRecord]:
        with self._lock:
            self._fence(fence)
            if status is not None:
                self._write(fence, status.status, status.events, status.create_row)
            intent = StoredIntent(len(self.intents) + 1, fence.term, deployment, action, target)
            self.intents.append(intent)
        record = MutationRecord()
        outcome = "fenced"
        try:
            fence.check_trust()
            outcome = "error"
            yield record
        except Exception:
            intent.outcome = outcome
            raise
        # (a BaseException, the simulated crash, leaves the outcome unwritten, as SIGKILL does)
        with self._lock:
            intent.outcome = "ok"
            if record.created is not None:
                self.container_records[record.created] = deployment
                self.container_names[record.created] = target
            if record.removed is not None:
                self.container_names.pop(record.removed, None)
                self.container_records.pop(record.removed, None)
            self.events.extend((fence.term, event) for event in record.events)

    def unfinished_intents(self, fence: Fence) -> list[Intent]:
        return [
            Intent(i.id, i.term, i.deployment, i.action, i.target)
            for i in self.intents
            if i.term < fence.term and i.outcome is None and i.resolution is None
        ]

    def resolve_intent(
        self,
        fence: Fence,
        intent: Intent,
        resolution: Resolution,
        event: Event,
        created: str | None = None,
    ) -> None:
        with self._lock:
            self._fence(fence)
            stored = self.intents[intent.id - 1]
            if stored.resolution is None:
                stored.resolution, stored.resolved_by_term = resolution, fence.term
            if created is not None:
                self.container_records[created] = intent.deployment
                self.container_names[created] = intent.target
            self.events.append((fence.term, event))

    def proof_key(self) -> bytes:
        return self.proof_key_bytes

    def record_again(
        self, fence: Fence, deployment: str, replicas: Sequence[tuple[str, str]], event: Event
    ) -> None:
        with self._lock:
            self._fence(fence)
            for replica_id, name in replicas:
                self.container_records[replica_id] = deployment
                self.container_names[replica_id] = name
            self.events.append((fence.term, event))

    def mark_stuck(self, fence: Fence, name: str, generation: int, event: Event) -> None:
        with self._lock:
            self._fence(fence)
            stored = self.statuses.get(name)
            if stored is not None:
                same = stored.stuck_generation == generation
                stored.stuck_resumes = stored.stuck_resumes + 1 if same else 1
                stored.stuck_generation = generation
            self.events.append((fence.term, event))

    def release_holds(self, fence: Fence, permanent_only: bool = False) -> list[str]:
        with self._lock:
            self._fence(fence)
            now = self.clock.wall()
            released = []
            for name, stored in self.statuses.items():
                status = stored.write
                due = status.next_attempt_at
                kinds = ("permanent",) if permanent_only else ("permanent", "transient")
                if status.failure_kind in kinds and due is not None and due > now:
                    stored.write = replace(status, next_attempt_at=now)
                    released.append(name)
            return released

    def prune_mutations(self, older_than_s: float) -> None:
        pass

    # revisions --------------------------------------------------------------------------------
    def serve_revision(
        self,
        fence: Fence,
        deployment: str,
        generation: int,
        spec: dict[str, Any],
        spec_hash: str,
        image: str,
        status: StatusChange | None = None,
        note: Callable[[int], Event] | None = None,
    ) -> int:
        with self._lock:
            self._fence(fence)
            if status is not None:
                self._write(fence, status.status, status.events, status.create_row)
            revision = self._serve(deployment, spec, spec_hash)
            if note is not None:
                self.events.append((fence.term, note(revision)))
            return revision

    def _serve(self, deployment: str, spec: dict[str, Any], spec_hash: str) -> int:
        rows = self.revisions.setdefault(deployment, [])
        current = self._serving_row(deployment)
        if current is not None and current["spec_hash"] == spec_hash:
            return int(current["revision"])
        if current is not None:
            current["outcome"] = "superseded"
        revision = len(rows) + 1
        rows.append(
            {"revision": revision, "spec": spec, "spec_hash": spec_hash, "outcome": "serving"}
        )
        self.serving[deployment] = revision
        return revision

    def record_rollback(
        self,
        fence: Fence,
        deployment: str,
        generation: int,
        spec: dict[str, Any],
        spec_hash: str,
        image: str,
        reason: str,
    ) -> int:
        self._fence(fence)
        rows = self.revisions.setdefault(deployment, [])
        rows.append(
            {
                "revision": len(rows) + 1,
                "spec": spec,
                "spec_hash": spec_hash,
                "outcome": "rolled_back",
                "reason": reason,
            }
        )
        return len(rows)

    # builds -----------------------------------------------------------------------------------
    def current_build(self, deployment: str) -> BuildRecord | None:
        queued = sorted(
            (b for b in self.builds if b.status == BuildStatus.QUEUED),
            key=lambda b: (-b.priority, b.id),
        )
        for build in reversed(self.builds):
            if build.deployment == deployment:
                if build.status != BuildStatus.QUEUED:
                    return build
                position = queued.index(build) + 1
                return replace(build, position=position, queue_length=len(queued))
        return None

    def enqueue_build(
        self,
        fence: Fence | None,
        deployment: str,
        generation: int,
        source: dict[str, Any],
        source_key: str,
        priority: int,
        revision: str | None = None,
        requested_by: str = "berth",
    ) -> BuildRecord:
        if fence is not None:
            self._fence(fence)
        build = BuildRecord(
            id=len(self.builds) + 1,
            deployment=deployment,
            generation=generation,
            source=source,
            source_key=source_key,
            status=BuildStatus.QUEUED,
            priority=priority,
            revision=revision,
        )
        self.builds.append(build)
        return build

    def set_build(self, build_id: int, **changes: Any) -> None:
        """What the dispatcher writes: a build's progress or end."""
        index = build_id - 1
        self.builds[index] = replace(self.builds[index], **changes)


# --- Docker -------------------------------------------------------------------------------------
@dataclass
class FakeContainer:
    id: str
    request: ReplicaRequest
    created: int
    state: RunState = RunState.CREATED
    started_at: float | None = None
    exit_code: int | None = None
    finished_at: float | None = None
    # Where it runs, as a runtime with nodes says (a test moves it to play a lost node).
    node: str = LOCAL_NODE
    moved_from: str = ""


@dataclass
class Behaviour:
    """How one deployment's containers behave once started."""

    exit_code: int | None = None  # exits at once with this code
    logs: str = "starting up\nfatal: no config"
    healthy_after_s: float | None = 0.0  # with a healthcheck: healthy after; None = never


@dataclass
class FakeRuntime:
    clock: FakeClock
    images: set[str] = field(default_factory=lambda: {"berth-example/busybox:1"})
    containers: dict[str, FakeContainer] = field(default_factory=dict)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    failures: dict[str, list[BerthError]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    down: bool = False  # the engine does not answer
    shutting_down: bool = False  # it answers on kept connections, refuses new ones
    announces_changes: bool = True  # as one engine's events do
    _ids: Iterator[int] = field(default_factory=itertools.count)

    def behaviour(self, container: FakeContainer) -> Behaviour:
        """A deployment's behaviour, or that of one image of it ("web@image")."""
        deployment = container.request.labels[LABEL_DEPLOYMENT]
        found = self.behaviours.get(f"{deployment}@{container.request.image}")
        return found or self.behaviours.get(deployment, Behaviour())

    def stop_everything(self) -> None:
        """What an engine going down does to its containers."""
        for container in self.containers.values():
            if container.state == RunState.RUNNING:
                container.state, container.exit_code = RunState.EXITED, 0
                container.finished_at = self.clock.wall().timestamp()

    def fail(self, call: str, *errors: BerthError) -> None:
        """The next calls of `call` raise these errors, one each."""
        self.failures.setdefault(call, []).extend(errors)

    def _call(self, call: str) -> None:
        self.calls.append(call)
        if self.down:
            raise DockerUnavailable(f"{call}: Docker engine unreachable")
        pending = self.failures.get(call)
        if pending:
            raise pending.pop(0)

    def _health(self, container: FakeContainer) -> Health:
        if container.request.healthcheck is None or container.state != RunState.RUNNING:
            return Health.NONE
        after = self.behaviour(container).healthy_after_s
        assert container.started_at is not None
        if after is None:
            return Health.STARTING  # a probe that never passes within its start period
        healthy = self.clock.elapsed - container.started_at >= after
        return Health.HEALTHY if healthy else Health.STARTING

    def of(self, deployment: str) -> list[FakeContainer]:
        return [
            c for c in self.containers.values() if c.request.labels[LABEL_DEPLOYMENT] == deployment
        ]

    # Runtime ------------------------------------------------------------------------------
    def accepting(self) -> bool:
        return not (self.down or self.shutting_down)

    def observe(self, deployment: str | None = None) -> list[ObservedReplica]:
        self._call("list")
        return [
            self._observed(container)
            for container in self.containers.values()
            if deployment is None or container.request.labels.get(LABEL_DEPLOYMENT) == deployment
        ]

    def observe_after(
        self, deployment: str, before: Sequence[ObservedReplica], changed: Collection[str]
    ) -> list[ObservedReplica]:
        """As the docker runtime: the few changed read one by one, else listed again."""
        if not reads_one_by_one(before, changed):
            return self.observe(deployment)
        found = []
        for replica_id in changed:
            self._call("inspect")
            if replica_id in self.containers:
                found.append(self._observed(self.containers[replica_id]))
        return found

    def _observed(self, container: FakeContainer) -> ObservedReplica:
        labels = container.request.labels
        return ObservedReplica(
            id=container.id,
            name=container.request.name,
            deployment=labels.get(LABEL_DEPLOYMENT),
            replica=int(labels[LABEL_REPLICA]),
            spec_hash=labels.get(LABEL_SPEC_HASH),
            cluster=labels.get(LABEL_CLUSTER, "default"),
            proof=labels.get(LABEL_PROOF, ""),
            state=container.state,
            health=self._health(container),
            created=container.created,
            node=container.node,
            moved_from=container.moved_from,
        )

    def prepare_image(self, image: str, before_pull: Callable[[], None] | None = None) -> str:
        self._call("image")
        if image not in self.images:
            raise ImageUnavailable(f"image {image!r} is not present locally")
        return "present"

    def place(self, request: ReplicaRequest) -> str:
        self._call("create")
        for container in self.containers.values():
            if container.request.name == request.name:
                if LABEL_DEPLOYMENT not in container.request.labels:
                    raise NameTaken(f"container name {request.name!r} is not Berth's")
                if container.request.labels == request.labels:
                    return container.id
                raise DockerConflict(f"container name {request.name!r} is held")
        container_id = f"{next(self._ids):012x}" + "0" * 52
        self.containers[container_id] = FakeContainer(
            container_id, request, created=int(self.clock.elapsed)
        )
        return container_id

    def start(self, replica_id: str, from_state: RunState = RunState.CREATED) -> None:
        self._call("start")
        container = self._existing(replica_id)
        behaviour = self.behaviour(container)
        container.started_at = self.clock.elapsed
        if behaviour.exit_code is not None:
            container.state, container.exit_code = RunState.EXITED, behaviour.exit_code
            container.finished_at = self.clock.wall().timestamp()
        else:
            container.state, container.exit_code = RunState.RUNNING, None

    def restart(self, replica_id: str, grace_s: int) -> None:
        self.start(replica_id, RunState.RUNNING)

    def retire(self, replica_id: str, grace_s: int) -> None:
        self._call("remove")
        self.containers.pop(replica_id, None)

    def inspect(self, replica_id: str) -> ReplicaInspection:
        self._call("inspect")
        container = self._existing(replica_id)
        health = self._health(container)
        return ReplicaInspection(
            status=container.state,
            exit_code=container.exit_code,
            health_output="probe failed: connection refused"
            if health in (Health.STARTING, Health.UNHEALTHY)
            else "",
            finished_at=container.finished_at,
            started_at=None
            if container.started_at is None
            else (EPOCH + timedelta(seconds=container.started_at)).timestamp(),
        )

    def output_tail(self, replica_id: str, lines: int = 20) -> str:
        return self.behaviour(self._existing(replica_id)).logs

    def nodes(self) -> list[ObservedNode]:
        """One engine, as the docker runtime reports it."""
        self._call("nodes")
        return [
            ObservedNode(LOCAL_NODE, LOCAL_NODE, "", "engine", Availability.ACTIVE, NodeState.READY)
        ]

    def _existing(self, replica_id: str) -> FakeContainer:
        """The replica, or the docker runtime's answer for one that is gone."""
        container = self.containers.get(replica_id)
        if container is None:
            raise ReplicaVanished(f"No such container: {replica_id}")
        return container


# --- leadership and the loop --------------------------------------------------------------------
class FakeLeadership:
    """Leads `term` while trusted; the store's term moving on deposes it."""

    def __init__(self, store: FakeStore, term: int) -> None:
        self.store = store
        self.term = term
        self.trusted = True

    def fence(self) -> Fence:
        if not self.trusted or self.store.term != self.term:
            raise Deposed("not the leader")

        def check_trust() -> None:
            if not self.trusted:
                raise Deposed(f"trust window of term {self.term} lapsed")

        return Fence("unit", self.term, f"node-{self.term}", check_trust)


def unit_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "cluster": "unit",
        "health_check_deadline_s": 60.0,
        "health_poll_interval_s": 1.0,
        "retry_base_s": 1.0,
        "retry_max_s": 60.0,
        "stop_timeout_s": 1,
        "stuck_deadline_s": 600.0,
    }
    return Settings(**(values | overrides))


class Cluster:
    """One Berth replica's loop (real Reconciler, FullResync, Controller) on the fakes."""

    def __init__(
        self,
        store: FakeStore | None = None,
        runtime: FakeRuntime | None = None,
        settings: Settings | None = None,
        background_stops: bool = False,
    ) -> None:
        """`background_stops`: stops are handed to `self.pending_stops` (run them with
        `finish_stops`) instead of holding the pass."""
        self.clock = store.clock if store else FakeClock()
        self.store = store or FakeStore(self.clock)
        self.runtime = runtime or FakeRuntime(self.clock)
        self.settings = settings or unit_settings()
        self.leadership = FakeLeadership(self.store, self.store.term)
        self.stopping = threading.Event()
        self.history = EngineHistory()
        self.queue = WorkQueue(clock=self.clock.monotonic)
        self.pending_stops: list[Callable[[], None]] = []
        self.stops = (
            BackgroundStops(self.queue.add, run=self.pending_stops.append)
            if background_stops
            else None
        )
        self.reconciler = Reconciler(
            self.settings,
            Stores.backed_by(self.store),
            self.runtime,
            self.leadership,
            self.stopping,
            wall_clock=self.clock.wall,
            engine=self.history,
            stops=self.stops,
        )
        self.resync = FullResync(
            self.settings,
            Stores.backed_by(self.store),
            self.runtime,
            self.leadership,
            stops=self.stops,
            wall_clock=self.clock.wall,
            monotonic=self.clock.monotonic,
        )
        self.controller = Controller(
            self.reconciler,
            self.resync,
            self.queue,
            self.stopping,
            self.clock.monotonic,
            elected=lambda: self.store.term == self.leadership.term,
        )
        self.outcomes: list[tuple[str, Outcome]] = []

    def engine_down(self) -> None:
        self.runtime.down = True
        self.runtime.stop_everything()
        self.history.lost(self.clock.wall().timestamp())

    def engine_back(self) -> None:
        """The engine answers again; the Docker watcher would now tell the controller."""
        self.runtime.down = False
        self.history.back(self.clock.wall().timestamp())
        self.controller.release_holds_next(Release.ALL)

    def successor(self) -> Cluster:
        """A new leader after this one died: a new term, nothing kept in memory."""
        faults.arm(None)
        self.store.term += 1
        return Cluster(self.store, self.runtime, self.settings)

    def drive(self, *names: str, until_s: float = 120.0, max_passes: int = 500) -> None:
        """Queue `names` (or a full resync), then run passes single-threaded, moving the
        clock to each requeue, until nothing is due before `until_s` from now."""
        if names:
            for name in names:
                self.queue.add(name)
        else:
            self.controller.resync()
        horizon = self.clock.elapsed + until_s
        for _ in range(max_passes):
            key = self.queue.get(timeout_s=0)
            if key is None:
                due = self.queue.next_due()
                if due is None or due > horizon:
                    return
                self.clock.advance(due - self.clock.elapsed)
                continue
            try:
                self.outcomes.append((key, self.controller.process(key)))
            finally:
                self.queue.done(key)
        raise AssertionError(f"still busy after {max_passes} passes")

    def finish_stops(self) -> int:
        """Run the stops handed over so far (their processes end); how many."""
        done, self.pending_stops[:] = list(self.pending_stops), []
        for stop in done:
            stop()
        return len(done)

    def last_outcome(self, name: str) -> Outcome:
        return [outcome for n, outcome in self.outcomes if n == name][-1]


def crash_at(point: str) -> None:
    """Arm a simulated crash at `point` (see controller.loop.faults)."""

    def crash() -> None:
        raise SimulatedCrash(point)

    faults.arm(point, crash)
