"""Known faults of Docker engine versions Berth runs on, and what Berth does about them. Pure.

Called once at start by the daemon (`controller.loop.engine.warn_of_engine_faults`, with
the version the engine reports), which logs each fault found as a warning: an operator
sees why a setting is what it is, and which engine release removes the need.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from controller.model.settings_daemon import DEFAULT_STOP_CONCURRENCY


@dataclass(frozen=True)
class EngineFault:
    """One known fault: the releases it affects (every one before `fixed_in`) and what it
    does."""

    name: str
    fixed_in: tuple[int, int, int]
    what: str


KNOWN_FAULTS = (
    EngineFault(
        name="moby/libnetwork#2649",
        fixed_in=(20, 10, 27),
        what=(
            "a lock-order deadlock in libnetwork between a container exit's network release "
            "and the endpoint-delete watcher: the engine stops answering when many containers "
            "exit at once (on this project's machine, 32 stops at once wedged it, and 8 "
            "once, in a teardown of 200)"
        ),
    ),
)


def release_of(version: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a version an engine reports ("20.10.24+dfsg1", "24.0.7",
    "25.0.0-rc.1"), or None if it has none."""
    found = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", version)
    if found is None:
        return None
    major, minor, patch = found.groups()
    return int(major), int(minor), int(patch or 0)


def engine_faults(version: str, stop_concurrency: int) -> tuple[str, ...]:
    """A warning for each known fault of the engine `version`, saying what Berth's setting
    does about it; none for a version Berth cannot read (it says nothing it does not know)."""
    release = release_of(version)
    if release is None:
        return ()
    found = []
    for fault in KNOWN_FAULTS:
        if release >= fault.fixed_in:
            continue
        fixed = ".".join(str(part) for part in fault.fixed_in)
        if stop_concurrency <= DEFAULT_STOP_CONCURRENCY:
            advice = (
                f"Berth stops at most BERTH_STOP_CONCURRENCY={stop_concurrency} replicas at "
                f"once, which makes it rarer, not impossible"
            )
        else:
            advice = (
                f"BERTH_STOP_CONCURRENCY={stop_concurrency} is above "
                f"{DEFAULT_STOP_CONCURRENCY}, which makes it likely: lower it"
            )
        found.append(
            f"Docker engine {version.strip()} has {fault.name}, fixed in {fixed}: "
            f"{fault.what}. {advice}; an engine of {fixed} or later has no such risk"
        )
    return tuple(found)
