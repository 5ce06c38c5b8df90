"""Resolving the previous terms' unfinished Docker mutations when a leader starts.

Called by the full resync (`controller.loop.resync`) on the first resync of each term. An
intent without outcome means its leader died, or was frozen and deposed, between recording
the intent and recording what the call did. The new leader looks at Docker, asks the pure
`controller.policy.intents.judge`, and records the resolution with an event on the
deployment, so the audit trail says what really happened (see RECONCILIATION.md,
"What the mutation log proves").
"""

from __future__ import annotations

import structlog

from controller.loop.ports import MutationLog, Runtime
from controller.model.records import Event, Fence, MutationAction, Resolution
from controller.policy.intents import judge
from controller.policy.planner import managed_by

log = structlog.get_logger("berth.intents")


def resolve_unfinished(store: MutationLog, runtime: Runtime, fence: Fence, cluster: str) -> int:
    """Resolve every unfinished intent of earlier terms; return how many."""
    unfinished = store.unfinished_intents(fence)
    if not unfinished:
        return 0
    by_name = {c.name: c for c in managed_by(runtime.observe(), cluster)}
    for intent in unfinished:
        found = by_name.get(intent.target)
        resolution, why = judge(intent.action, found)
        message = (
            f"term {intent.term} left its {intent.action} of {intent.target} unfinished: "
            f"{resolution} ({why})"
        )
        log.warning("unfinished intent resolved", deployment=intent.deployment, message=message)
        created = (
            found.id
            if found and intent.action == MutationAction.CREATE and resolution == Resolution.DONE
            else None
        )
        store.resolve_intent(
            fence,
            intent,
            resolution,
            Event(
                deployment=intent.deployment,
                kind="note",
                level="info" if resolution == Resolution.DONE else "warning",
                message=message,
                metadata={
                    "intent_id": intent.id,
                    "intent_term": intent.term,
                    "action": intent.action,
                    "target": intent.target,
                    "resolution": resolution,
                },
            ),
            created,
        )
    return len(unfinished)
