"""The planner: a pure function from (desired deployments, observed containers) to actions.

No I/O and no clock, so it is tested with tables and hypothesis properties
(tests/unit/test_planner.py). The full resync (`controller.loop.resync`) calls `plan` over
everything; the reconciler (`controller.loop.reconciler`) calls `plan_deployment` for one
deployment before it acts; the effects of the actions are applied in one place,
`controller.loop.executor`.

Rules, per deployment, per replica slot 0..replicas-1:
- keep one container whose spec hash is current, preferring a running one, then the oldest;
- remove every other container in the slot (stale hash, duplicates, dead ones);
- create the slot's container when none is kept; start (or unpause) the kept one if stopped;
  restart the kept one if it runs but is unhealthy;
- remove containers of slots >= replicas (surplus), with unreadable replica labels, and of
  deployments that are no longer desired (orphans).
Containers without a deployment label, or of another Berth cluster, never appear in a plan.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from controller.model.names import DEFAULT_CLUSTER
from controller.model.replicas import (
    STARTABLE_STATES,
    Health,
    ObservedReplica,
    RestartReason,
    RunState,
)
from controller.model.spec import DeploymentSpec


@dataclass(frozen=True)
class DesiredDeployment:
    """The part of a deployment row the planner needs.

    `start_first`: a slot's old container keeps serving until its replacement is ready;
    at most `max_surge` slots are replaced at once, and `max_unavailable` slots may be
    emptied first (as stop-first does for all of them)."""

    name: str
    replicas: int
    spec_hash: str
    start_first: bool = False
    max_surge: int = 1
    max_unavailable: int = 0


def desired_deployment(spec: DeploymentSpec) -> DesiredDeployment:
    """What the planner needs of a spec (which must run an image), with its rollout's limits."""
    rollout = spec.rollout
    return DesiredDeployment(
        spec.name,
        spec.replicas,
        spec.spec_hash,
        start_first=rollout.strategy == "start-first",
        max_surge=rollout.max_surge,
        max_unavailable=rollout.max_unavailable,
    )


class RemoveReason(StrEnum):
    ORPHAN = "orphan"
    SURPLUS = "surplus"
    STALE = "stale"
    DUPLICATE = "duplicate"
    DEAD = "dead"
    BAD_LABEL = "bad_replica_label"
    CRASH_LOOP = "crash_loop"
    UNRECORDED = "unrecorded"  # Berth's labels, but no record of Berth creating it


@dataclass(frozen=True)
class RetireReplica:
    deployment: str
    replica: int | None
    replica_id: str
    replica_name: str
    reason: RemoveReason

    kind = "remove"


@dataclass(frozen=True)
class CreateReplica:
    deployment: str
    replica: int

    kind = "create"


@dataclass(frozen=True)
class StartReplica:
    deployment: str
    replica: int
    replica_id: str
    replica_name: str
    from_state: RunState

    kind = "start"


@dataclass(frozen=True)
class RestartReplica:
    """The kept container runs but its healthcheck says unhealthy."""

    deployment: str
    replica: int
    replica_id: str
    replica_name: str

    kind = "restart"


Action = RetireReplica | CreateReplica | StartReplica | RestartReplica


def restart_reason(action: Action) -> RestartReason | None:
    """Why an action restarts a failed replica (`exited`, `unhealthy`), or None if it does not.

    Starting a container that was only created, or unpausing one, is not a restart."""
    if isinstance(action, RestartReplica):
        return RestartReason.UNHEALTHY
    if isinstance(action, StartReplica) and action.from_state == RunState.EXITED:
        return RestartReason.EXITED
    return None


_KEEPER_PREFERENCE = {
    RunState.RUNNING: 0,
    RunState.RESTARTING: 1,
    RunState.PAUSED: 2,
    RunState.CREATED: 3,
    RunState.EXITED: 4,
}


def _keeper_rank(container: ObservedReplica) -> tuple[int, int, str]:
    return (_KEEPER_PREFERENCE.get(container.state, 9), container.created, container.id)


def managed_by(containers: Iterable[ObservedReplica], cluster: str) -> list[ObservedReplica]:
    """What a Berth of `cluster` may touch: labelled with a deployment and with that cluster."""
    return [c for c in containers if c.deployment is not None and c.cluster == cluster]


@dataclass
class _Budget:
    """A start-first rollout's room: new containers beside old ones (surge), old ones
    removed before their replacement is ready (unavailable)."""

    surge: int
    unavailable: int


def _serving_old(deployment: DesiredDeployment, container: ObservedReplica) -> bool:
    """An old revision's container that still serves (kept until its replacement is ready)."""
    return (
        deployment.start_first
        and container.recorded
        and container.spec_hash != deployment.spec_hash
        and container.state == RunState.RUNNING
    )


def _budget(
    deployment: DesiredDeployment, slots: Mapping[int, Sequence[ObservedReplica]]
) -> _Budget:
    """What is already spent: slots whose new container is not ready yet beside an old
    one (surge), and slots with no ready container at all (unavailable)."""
    in_flight = unavailable = 0
    for replica in range(deployment.replicas):
        slot = slots.get(replica, ())
        new = [c for c in slot if c.spec_hash == deployment.spec_hash and c.recorded]
        old = [c for c in slot if _serving_old(deployment, c)]
        if old and new and not any(c.ready for c in new):
            in_flight += 1
        if slot and not any(c.ready for c in slot):
            unavailable += 1
    return _Budget(
        max(0, deployment.max_surge - in_flight),
        max(0, deployment.max_unavailable - unavailable),
    )


def _plan_slot(
    deployment: DesiredDeployment,
    replica: int,
    slot: Sequence[ObservedReplica],
    budget: _Budget | None = None,
) -> list[Action]:
    actions: list[Action] = []
    current = sorted(
        (
            c
            for c in slot
            if c.spec_hash == deployment.spec_hash
            and c.recorded
            and c.state not in (RunState.DEAD, RunState.REMOVING)
        ),
        key=_keeper_rank,
    )
    keeper = current[0] if current else None
    serving = [c for c in slot if _serving_old(deployment, c)]
    keep_old = bool(serving) and not (keeper is not None and keeper.ready)
    if keep_old and keeper is None and budget is not None:
        if budget.surge > 0:
            budget.surge -= 1  # create the replacement beside the old container
        elif budget.unavailable > 0:
            budget.unavailable -= 1  # empty the slot first, then create (stop-first)
            keep_old = False
        else:
            return []  # waits its turn: the old container keeps serving
    for container in slot:
        if container is keeper or container.state == RunState.REMOVING:
            continue
        if keep_old and container in serving:
            continue
        if not container.recorded:
            reason = RemoveReason.UNRECORDED
        elif container.spec_hash != deployment.spec_hash:
            reason = RemoveReason.STALE
        elif container.state == RunState.DEAD:
            reason = RemoveReason.DEAD
        else:
            reason = RemoveReason.DUPLICATE
        actions.append(
            RetireReplica(deployment.name, replica, container.id, container.name, reason)
        )
    if keeper is None:
        actions.append(CreateReplica(deployment.name, replica))
    elif keeper.state in STARTABLE_STATES:
        actions.append(StartReplica(deployment.name, replica, keeper.id, keeper.name, keeper.state))
    elif keeper.state == RunState.RUNNING and keeper.health == Health.UNHEALTHY:
        actions.append(RestartReplica(deployment.name, replica, keeper.id, keeper.name))
    return actions


def _converged(deployment: DesiredDeployment, containers: Sequence[ObservedReplica]) -> bool:
    """The common case, checked without sorting or allocating much: one running, healthy
    enough, current container in each slot and nothing else."""
    if len(containers) != deployment.replicas:
        return False
    seen: set[int] = set()
    for container in containers:
        replica = container.replica
        if (
            container.spec_hash != deployment.spec_hash
            or not container.recorded
            or container.state != RunState.RUNNING
            or container.health == Health.UNHEALTHY
            or replica is None
            or not 0 <= replica < deployment.replicas
            or replica in seen
        ):
            return False
        seen.add(replica)
    return True


def plan_deployment(
    deployment: DesiredDeployment | None,
    name: str,
    containers: Sequence[ObservedReplica],
) -> list[Action]:
    """Actions for one deployment (`None` = deleted) given only its own containers."""
    if deployment is not None and _converged(deployment, containers):
        return []
    if deployment is None:
        return [
            RetireReplica(name, c.replica, c.id, c.name, RemoveReason.ORPHAN)
            for c in sorted(containers, key=lambda c: c.id)
            if c.state != RunState.REMOVING
        ]
    removals: list[Action] = []
    slots: dict[int, list[ObservedReplica]] = defaultdict(list)
    for container in sorted(containers, key=lambda c: c.id):
        reason: RemoveReason
        if container.replica is None or container.replica < 0:
            reason = RemoveReason.BAD_LABEL
        elif container.replica >= deployment.replicas:
            reason = RemoveReason.SURPLUS
        else:
            slots[container.replica].append(container)
            continue
        if container.state != RunState.REMOVING:
            removals.append(
                RetireReplica(name, container.replica, container.id, container.name, reason)
            )
    slot_actions: list[Action] = []
    budget = _budget(deployment, slots) if deployment.start_first else None
    for replica in range(deployment.replicas):
        slot_actions.extend(_plan_slot(deployment, replica, slots.get(replica, ()), budget))
    return removals + slot_actions


def plan(
    desired: Iterable[DesiredDeployment],
    observed: Iterable[ObservedReplica],
    cluster: str = DEFAULT_CLUSTER,
) -> dict[str, list[Action]]:
    """Every deployment that needs work, mapped to its actions (empty dict = converged).

    Within a deployment the order is: removals of containers outside the wanted slots, then
    per slot its removals before its create or start. Deployments are independent.

    The planner creates no reference cycles, so the cyclic garbage collector is paused while
    it runs: at 100k deployments its repeated scans of the growing heap cost as much as the
    planning itself (RECONCILIATION.md, "What the hot path costs").
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _plan(desired, observed, cluster)
    finally:
        if collecting:
            gc.enable()


def _plan(
    desired: Iterable[DesiredDeployment],
    observed: Iterable[ObservedReplica],
    cluster: str,
) -> dict[str, list[Action]]:
    by_name: Mapping[str, DesiredDeployment] = {d.name: d for d in desired}
    grouped: dict[str, list[ObservedReplica]] = defaultdict(list)
    for container in managed_by(observed, cluster):
        assert container.deployment is not None
        grouped[container.deployment].append(container)
    result: dict[str, list[Action]] = {}
    no_containers: tuple[ObservedReplica, ...] = ()
    for name, deployment in by_name.items():
        actions = plan_deployment(deployment, name, grouped.get(name, no_containers))
        if actions:
            result[name] = actions
    for name in sorted(grouped.keys() - by_name.keys()):  # orphans: deleted deployments
        result[name] = plan_deployment(None, name, grouped[name])
    return result


def ready_replicas(deployment: DesiredDeployment, containers: Iterable[ObservedReplica]) -> int:
    """Slots 0..replicas-1 served by a ready container of the current spec hash."""
    slots = {
        c.replica
        for c in containers
        if c.spec_hash == deployment.spec_hash
        and c.replica is not None
        and 0 <= c.replica < deployment.replicas
        and c.ready
    }
    return len(slots)
