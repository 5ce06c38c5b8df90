"""A deleted deployment's pass: its containers out of the routes and stopped, then its named
volumes released and its status row dropped.

Called by the reconciler (`controller.loop.reconciler`) for a deployment whose row is gone.
With background stops (`controller.loop.stops`) the containers stop off the pass: the
deployment stays `deleting` while any is still there, and the pass that finds none left
(queued when the last stop ends) releases the volumes and drops the row; the events stay.
"""

from __future__ import annotations

from controller.loop.executor import Executor
from controller.loop.ports import Stores
from controller.loop.routes import RouteKeeper
from controller.loop.status import StatusWriter
from controller.model.errors import InvalidSpec
from controller.model.outcome import Outcome
from controller.model.phases import Phase
from controller.model.records import DeploymentRecord, Fence
from controller.model.replicas import ObservedReplica
from controller.model.spec import DeploymentSpec
from controller.policy.planner import RetireReplica, plan_deployment
from controller.policy.rollout import serving_spec

# A deletion waiting for its stops looks again this often, should a stop's wake-up be lost.
STOPS_RECHECK_S = 5.0


def last_served(record: DeploymentRecord | None) -> DeploymentSpec | None:
    """The spec a deleted deployment last served (its revision outlives the row), which
    says which of its volumes to keep; None if it never served or no longer parses."""
    if record is None or record.serving_spec is None:
        return None
    try:
        return serving_spec(record)
    except InvalidSpec:
        return None


def tear_down(
    stores: Stores,
    executor: Executor,
    routes: RouteKeeper,
    fence: Fence,
    name: str,
    record: DeploymentRecord | None,
    containers: list[ObservedReplica],
) -> Outcome:
    removals = [a for a in plan_deployment(None, name, containers) if isinstance(a, RetireReplica)]
    writer = StatusWriter.for_teardown(stores, fence, name, record)
    last_spec = last_served(record)
    if removals:
        executor.teardown(writer, removals, last_spec)
    if containers and executor.stops is not None:  # stopping in the background
        if not removals and writer.phase != Phase.DELETING:
            writer.enter(Phase.DELETING, f"{len(containers)} container(s) stopping")
        writer.finish()
        message = f"deleting: {len(containers)} container(s) stopping"
        return Outcome.again(Phase.DELETING, STOPS_RECHECK_S, message)
    executor.release_volumes(writer, name, last_spec)
    routes.forget(name)
    if record is not None:
        writer.forget(len(containers))
    return Outcome.done(None, f"deleted: {len(containers)} container(s) removed")
