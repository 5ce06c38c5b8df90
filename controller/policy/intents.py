"""What became of a runtime mutation whose leader never recorded the outcome. Pure.

Called by `controller.loop.intents` when a new term starts, with the replica that now
holds the intent's target name (or None). `create`, `start` and `remove` leave a visible
trace; a `restart` or a stop does not, so it is `unknown` unless nothing is there at all.
"""

from __future__ import annotations

from controller.model.records import MutationAction, Resolution
from controller.model.replicas import ObservedReplica, RunState


def judge(action: MutationAction, found: ObservedReplica | None) -> tuple[Resolution, str]:
    """(resolution, why)."""
    if action == MutationAction.CREATE:
        if found is None:
            return Resolution.NOT_DONE, "no replica holds the name"
        return Resolution.DONE, f"{found.name} exists ({found.state})"
    if action == MutationAction.START:
        if found is None:
            return Resolution.UNKNOWN, "the replica is gone"
        if found.state in (RunState.RUNNING, RunState.RESTARTING):
            return Resolution.DONE, f"{found.name} is {found.state}"
        return Resolution.NOT_DONE, f"{found.name} is {found.state}"
    if action == MutationAction.REMOVE:
        if found is None or found.state == RunState.REMOVING:
            return Resolution.DONE, "the replica is gone" if found is None else "being removed"
        return Resolution.NOT_DONE, f"{found.name} still exists ({found.state})"
    return Resolution.UNKNOWN, f"a {action} leaves no trace Berth can read"
