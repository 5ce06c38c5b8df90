"""What became of a Docker mutation whose leader never recorded the outcome. Pure.

Called by `controller.loop.intents` when a new term starts, with the container that now
holds the intent's target name (or None). `create`, `start` and `remove` leave a visible
trace; a `restart` or a stop does not, so it is `unknown` unless nothing is there at all.
"""

from __future__ import annotations

from controller.model.containers import ObservedContainer


def judge(action: str, found: ObservedContainer | None) -> tuple[str, str]:
    """(resolution, why): resolution is `done`, `not done` or `unknown`."""
    if action == "create":
        if found is None:
            return "not done", "no container holds the name"
        return "done", f"{found.name} exists ({found.state})"
    if action == "start":
        if found is None:
            return "unknown", "the container is gone"
        if found.state in ("running", "restarting"):
            return "done", f"{found.name} is {found.state}"
        return "not done", f"{found.name} is {found.state}"
    if action == "remove":
        if found is None or found.state == "removing":
            return "done", "the container is gone" if found is None else "being removed"
        return "not done", f"{found.name} still exists ({found.state})"
    return "unknown", f"a {action} leaves no trace Berth can read"
