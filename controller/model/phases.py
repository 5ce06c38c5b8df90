"""The phases of a deployment: one vocabulary for code, metrics, settings and SQL.

Imported by the status writer, the reconciler, the policy layer, the metrics and the
settings. The database's CHECK constraint `deployment_status_phase_known` lists the same
values; tests/unit/test_vocabulary.py keeps the two equal.
"""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """Where a deployment is; `deployment_status.phase` holds the value."""

    QUEUED = "queued"
    PULLING_SOURCE = "pulling_source"
    BUILDING = "building"
    PULLING_IMAGE = "pulling_image"
    CREATING = "creating"
    STARTING = "starting"
    HEALTH_CHECK = "health_check"
    UPDATING_ROUTES = "updating_routes"
    ACTIVE = "active"
    DEGRADED = "degraded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"  # the new revision failed its rollout; the previous one serves
    DELETING = "deleting"


# Phases a pass moves through on its own: a deployment that stays in one of them past its
# deadline is stuck. `health_check` has its own deadline; the others are at rest.
# `pulling_source` and `building` default to the build's own timeouts (settings).
MOVING_PHASES = frozenset(
    {
        Phase.QUEUED,
        Phase.PULLING_SOURCE,
        Phase.BUILDING,
        Phase.PULLING_IMAGE,
        Phase.CREATING,
        Phase.STARTING,
        Phase.DELETING,
    }
)


# Phases in which a pass is done with its generation: it converged, failed, or was rolled
# back to the serving revision. A settled phase ends the generation's stuck count (the
# function `berth_write_status`, schema 26, lists the same; tests/unit/test_vocabulary.py
# holds them equal).
SETTLED_PHASES = frozenset({Phase.ACTIVE, Phase.FAILED, Phase.ROLLED_BACK})


def converged(phase: Phase | str | None, observed_generation: int, generation: int) -> bool:
    """The one "converged" rule: the status says this generation runs as declared. The view
    `deployment_overview.converged` computes the same (held equal by
    tests/integration/test_schema.py)."""
    return phase == Phase.ACTIVE and observed_generation == generation


def settled(phase: Phase | str | None, observed_generation: int, generation: int) -> bool:
    """A rollout of this generation has ended: converged, failed or rolled back."""
    return phase in SETTLED_PHASES and observed_generation == generation
