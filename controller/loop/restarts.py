"""Restart gating: which planned restarts may run now, and why replicas keep failing.

Called by the reconciler after planning; it also records what the reconciler reports of
restarts (`record_restarts`, `report_degraded`). For every restart (a container that exited
while it should run, or runs unhealthy) it asks the pure policy (`controller.policy.crashloop`)
whether the replica may restart now, turns restarts past `recreate_after` into a
remove + create, and gathers what an operator needs to see without opening Docker: the
exit code, OOM kill, the last healthcheck output and the log tail. Replicas that must
wait are reported back so the deployment can show `degraded` with that diagnosis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from controller.loop.engine import EngineHistory
from controller.loop.ports import Runtime
from controller.loop.status import StatusWriter
from controller.model.errors import BerthError, DockerServerError, DockerUnavailable
from controller.model.phases import Phase
from controller.model.records import DeploymentRecord
from controller.model.replicas import RestartReason
from controller.observability.metrics import CONTAINER_RESTARTS
from controller.policy.crashloop import ReplicaRestarts, RestartPolicy, decide, dump_states
from controller.policy.planner import (
    Action,
    CreateReplica,
    RemoveReason,
    RestartReplica,
    RetireReplica,
    StartReplica,
    restart_reason,
)
from controller.policy.redact import sanitize
from controller.policy.settle import clock_time

# An exit this soon after the start is the command finishing, not the app crashing later.
QUICK_EXIT_S = 2.0


@dataclass(frozen=True)
class Diagnosis:
    exit_code: int | None = None
    oom_killed: bool = False
    health_output: str = ""
    log_tail: str = ""
    finished_at: float | None = None
    ran_s: float | None = None  # from start to exit

    def summary(self, reason: str) -> str:
        exited = reason == RestartReason.EXITED
        parts = [f"exited with code {self.exit_code}" if exited else "unhealthy"]
        if exited and self.ran_s is not None and self.ran_s < QUICK_EXIT_S:
            parts.append(
                f"it ended {self.ran_s:.1f}s after starting: a replica's command (`command`, "
                "or the image's default) must keep running, not finish"
            )
        if self.oom_killed:
            parts.append("OOM-killed")
        if self.health_output:
            parts.append(f"last health check: {self.health_output[:160]}")
        if self.log_tail:
            last_line = self.log_tail.strip().splitlines()[-1][:160]
            parts.append(f"last log line: {last_line}")
        return "; ".join(parts)


@dataclass(frozen=True)
class Waiting:
    replica: int
    replica_name: str
    reason: str
    wait_s: float
    restarts: int
    diagnosis: Diagnosis


@dataclass(frozen=True)
class Restarted:
    replica: int
    replica_name: str
    reason: str
    restarts: int
    recreated: bool
    next_backoff_s: float
    diagnosis: Diagnosis


@dataclass
class Gated:
    actions: list[Action] = field(default_factory=list)
    notes: dict[int, str] = field(default_factory=dict)
    waiting: list[Waiting] = field(default_factory=list)
    restarted: list[Restarted] = field(default_factory=list)
    states: dict[int, ReplicaRestarts] = field(default_factory=dict)

    @property
    def restart_notes(self) -> dict[int, str]:
        """Per restarted replica, why and which time: "unhealthy replica 0, restart 3"."""
        return {
            r.replica: f"{r.reason} replica {r.replica}, restart {r.restarts}"
            + (" (recreated)" if r.recreated else "")
            for r in self.restarted
        }


class RestartGate:
    def __init__(
        self,
        runtime: Runtime,
        policy: RestartPolicy,
        log_tail_lines: int,
        engine: EngineHistory | None = None,
    ) -> None:
        self.runtime = runtime
        self.engine = engine or EngineHistory()
        self.policy = policy
        self.log_tail_lines = log_tail_lines

    def diagnose(self, container_id: str, env: Mapping[str, str]) -> Diagnosis:
        """Why a replica stopped. An engine that does not answer fails the pass instead (no
        restart is decided, or counted, without knowing why: the engine may be going down)."""
        try:
            state = self.runtime.inspect(container_id)
            tail = (
                self.runtime.output_tail(container_id, self.log_tail_lines)
                if self.log_tail_lines
                else ""
            )
        except (DockerUnavailable, DockerServerError):
            raise
        except BerthError:  # say, the container vanished meanwhile
            return Diagnosis()
        ran_s = None
        if state.started_at is not None and state.finished_at is not None:
            ran_s = max(0.0, state.finished_at - state.started_at)
        return Diagnosis(
            exit_code=state.exit_code,
            oom_killed=state.oom_killed,
            health_output=sanitize(state.health_output, env, max_lines=5),
            log_tail=sanitize(tail, env, max_lines=self.log_tail_lines),
            finished_at=state.finished_at,
            ran_s=ran_s,
        )

    def apply(
        self,
        actions: Sequence[Action],
        states: dict[int, ReplicaRestarts],
        replicas: int,
        now: float,
        env: Mapping[str, str] | None = None,
    ) -> Gated:
        """Gate the planned restarts; `env` (the deployment's) is redacted from what is quoted."""
        env = env or {}
        gated = Gated(states={r: s for r, s in states.items() if r < replicas})
        for action in actions:
            reason = restart_reason(action)
            if reason is None or not isinstance(action, StartReplica | RestartReplica):
                gated.actions.append(action)
                continue
            diagnosis = self.diagnose(action.replica_id, env)
            if reason == RestartReason.EXITED and self.engine.stopped_by_engine(
                diagnosis.finished_at
            ):
                # The engine stopped it when it went down: no crash, no count, no backoff.
                gated.actions.append(action)
                gated.notes[action.replica] = "stopped by a Docker engine restart"
                continue
            if reason == RestartReason.EXITED and not self.runtime.accepting():
                # Stopped by an engine that is shutting down (it refuses new connections
                # while it stops its containers): judged once it is back, as its exit.
                raise DockerUnavailable(
                    f"replica {action.replica} exited while the Docker engine is shutting "
                    "down (it refuses new connections): judged once the engine is back"
                )
            previous = gated.states.get(action.replica, ReplicaRestarts())
            decision = decide(previous, now, self.policy, reason, diagnosis.exit_code)
            gated.states[action.replica] = decision.state
            if not decision.allowed:
                gated.waiting.append(
                    Waiting(
                        action.replica,
                        action.replica_name,
                        reason,
                        decision.wait_s,
                        decision.state.restarts,
                        diagnosis,
                    )
                )
                continue
            restarts = decision.state.restarts
            if decision.recreate:
                gated.actions.append(
                    RetireReplica(
                        action.deployment,
                        action.replica,
                        action.replica_id,
                        action.replica_name,
                        RemoveReason.CRASH_LOOP,
                    )
                )
                gated.actions.append(CreateReplica(action.deployment, action.replica))
            else:
                gated.actions.append(action)
            gated.notes[action.replica] = f"{reason}; restart {restarts}" + (
                ", recreated" if decision.recreate else ""
            )
            gated.restarted.append(
                Restarted(
                    action.replica,
                    action.replica_name,
                    reason,
                    restarts,
                    decision.recreate,
                    self.policy.backoff_s(restarts + 1),
                    diagnosis,
                )
            )
        return gated


# --- what the reconciler records of restarts ---------------------------------------------
def record_restarts(
    writer: StatusWriter, record: DeploymentRecord, gated: Gated, new_generation: bool
) -> None:
    """Keep the per-replica restart state and count; one warning event per restart."""
    count = (0 if new_generation else record.restart_count) + len(gated.restarted)
    writer.restarts(dump_states(gated.states), count)
    for restart in gated.restarted:
        CONTAINER_RESTARTS.labels(reason=restart.reason).inc()
        verb = "recreating" if restart.recreated else "restarting"
        writer.note(
            f"replica {restart.replica} {restart.diagnosis.summary(restart.reason)}; "
            f"{verb} {restart.replica_name} (restart {restart.restarts}; "
            f"the next would wait {restart.next_backoff_s:g}s)",
            level="warning",
            replica=restart.replica,
            reason=restart.reason,
            restarts=restart.restarts,
            exit_code=restart.diagnosis.exit_code,
            oom_killed=restart.diagnosis.oom_killed,
            health_output=restart.diagnosis.health_output,
            log_tail=restart.diagnosis.log_tail,
        )


def report_degraded(
    writer: StatusWriter,
    desired_replicas: int,
    ready: int,
    waiting: list[Waiting],
    now: datetime,
) -> str:
    """Replicas waiting out a restart backoff: say which, why, and until when (an
    absolute time, which stays true between writes)."""
    details = "; ".join(
        f"replica {w.replica} ({w.replica_name}) {w.diagnosis.summary(w.reason)}, "
        f"restarted {w.restarts}x, next restart at "
        f"{clock_time(datetime.fromtimestamp(now.timestamp() + w.wait_s, UTC))}"
        for w in waiting
    )
    message = f"crash-looping: {ready}/{desired_replicas} ready; {details}"
    next_restart = datetime.fromtimestamp(now.timestamp() + min(w.wait_s for w in waiting), UTC)
    writer.enter(
        Phase.DEGRADED,
        message,
        crash_looping=[w.replica for w in waiting],
        next_restart_at=next_restart.isoformat(),
    )
    writer.progress(ready, desired_replicas)
    return message
