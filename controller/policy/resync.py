"""The full resync's decision: which deployments need a pass, and the fleet's gauges. Pure.

Called by the full resync (`controller.loop.resync`) with everything it observed in one
SQL query and one runtime list: the deployment records, their replicas by deployment
(already marked with whether Berth has a record of creating them), the names it found
stuck, and the time. No I/O and no clock of its own, so it is tested with tables
(tests/unit/test_resync_policy.py).

A deployment needs a pass when the planner has actions for it (missing, stale, stopped,
surplus or orphaned replicas), or when its status is not true to the world: not
converged (`controller.model.phases.converged`) or recording another number of ready
replicas than the runtime shows; when it was deleted and still has a status row; when it
was found stuck or its row no longer parses. Not while it is failed and held (waiting out
its backoff, or for a spec change): its own pass requeued itself.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from controller.model.errors import InvalidSpec
from controller.model.phases import Phase, converged
from controller.model.records import DeploymentRecord
from controller.model.replicas import ObservedReplica
from controller.model.spec import Route, parse_spec
from controller.policy.crashloop import load_states
from controller.policy.planner import DesiredDeployment, desired_deployment, plan, ready_replicas
from controller.policy.routes import members as route_members
from controller.policy.settle import held

# Per routed deployment: its routes, and the serving replicas' addresses by replica id.
Routed = dict[str, tuple[list[Route], dict[str, dict[int, str]]]]


@dataclass
class Fleet:
    """What one full resync saw: the gauges' values."""

    phases: dict[Phase, int] = field(default_factory=lambda: dict.fromkeys(Phase, 0))
    replicas_desired: int = 0
    replicas_ready: int = 0
    stuck: int = 0
    in_backoff: int = 0


@dataclass
class Survey:
    """The resync's verdict: the names needing a pass, the gauges, the routes to repair."""

    dirty: set[str] = field(default_factory=set)
    fleet: Fleet = field(default_factory=Fleet)
    routed: Routed = field(default_factory=dict)


def status_true(record: DeploymentRecord, ready: int) -> bool:
    """The status says converged and counts the replicas the runtime shows ready."""
    return (
        converged(record.phase, record.observed_generation, record.generation)
        and record.ready_replicas == ready
    )


def moved(recorded: Sequence[Mapping[str, object]], replicas: Sequence[ObservedReplica]) -> bool:
    """Whether a replica runs elsewhere, or in another state, than its last pass recorded."""
    before = {(str(row.get("id")), str(row.get("node")), str(row.get("state"))) for row in recorded}
    return before != {(r.id[:12], r.node, str(r.state)) for r in replicas}


def survey(
    records: Sequence[DeploymentRecord],
    replicas: Mapping[str, Sequence[ObservedReplica]],
    cluster: str,
    now: datetime,
    stuck: Collection[str] = (),
) -> Survey:
    """Which deployments need a pass (`replicas` by deployment: this cluster's only)."""
    found = Survey()
    fleet = found.fleet
    desired: list[DesiredDeployment] = []
    sourced: set[str] = set()
    for record in records:
        if record.phase is not None:
            fleet.phases[record.phase] += 1
        fleet.in_backoff += sum(
            1
            for state in load_states(record.replica_restarts).values()
            if state.next_restart_at is not None and state.next_restart_at > now.timestamp()
        )
        if record.name in stuck:
            fleet.stuck += 1
            found.dirty.add(record.name)
        if not record.present:
            found.dirty.add(record.name)
            continue
        assert record.spec is not None
        if held(record, now) is not None:  # failed: its pass requeued itself
            continue
        try:
            spec = parse_spec(record.spec)
        except InvalidSpec:
            found.dirty.add(record.name)
            continue
        mine = replicas.get(record.name, ())
        if record.phase is not None and moved(record.observed_replicas, mine):
            found.dirty.add(record.name)  # the `replicas` view and the events follow
        if spec.routes:
            found.routed[record.name] = (spec.routes, route_members(spec.routes, mine))
        fleet.replicas_desired += spec.replicas
        if spec.source is not None:
            # Its replicas run the built image, which only its pass knows: judged by its
            # status, and planned by its pass.
            sourced.add(record.name)
            ready = sum(1 for c in mine if c.ready)
            fleet.replicas_ready += ready
            if not (status_true(record, ready) and ready == spec.replicas == len(mine)):
                found.dirty.add(record.name)
            continue
        deployment = desired_deployment(spec)
        desired.append(deployment)
        ready = ready_replicas(deployment, mine)
        fleet.replicas_ready += ready
        if not status_true(record, ready):
            found.dirty.add(record.name)
    planned = plan(
        desired,
        [c for name, group in replicas.items() if name not in sourced for c in group],
        cluster,
    )
    known = {record.name for record in records}
    skipped = known - {d.name for d in desired} - found.dirty  # failed, waiting: leave them be
    found.dirty |= set(planned) - skipped
    return found
