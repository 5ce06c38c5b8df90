"""One data plane per cluster: the pure verdict (controller.policy.dataplane) and the guard
that asks it (controller.loop.dataplane), on fakes of the engine's and the database's side."""

from __future__ import annotations

import pytest

from controller.loop.dataplane import FRESH_S, DataPlaneGuard
from controller.model.claims import ClusterEngine, EngineClaim, RefusalKind
from controller.model.errors import DockerUnavailable
from controller.observability.metrics import DATA_PLANE_REFUSED
from controller.policy.dataplane import refusal

DB, OTHER_DB = "d" * 32, "e" * 32
ENGINE, OTHER_ENGINE = "1" * 32, "2" * 32


@pytest.mark.parametrize(
    ("marker", "recorded", "kind"),
    [
        (EngineClaim(ENGINE, DB), ClusterEngine(ENGINE, "a"), None),
        (EngineClaim(ENGINE, OTHER_DB), ClusterEngine(ENGINE, "a"), RefusalKind.OTHER_DATABASE),
        (EngineClaim(ENGINE, DB), ClusterEngine(OTHER_ENGINE, "a"), RefusalKind.OTHER_ENGINE),
        (
            EngineClaim(OTHER_ENGINE, OTHER_DB),
            ClusterEngine(ENGINE, "a"),
            RefusalKind.OTHER_DATABASE,
        ),
    ],
)
def test_the_verdict(
    marker: EngineClaim, recorded: ClusterEngine, kind: RefusalKind | None
) -> None:
    found = refusal("web", DB, marker, recorded)
    assert (found.kind if found else None) == kind
    if found is not None:
        assert "web" in found.message


class Engine:
    """A Docker engine's claim volume: the first database to ask writes it."""

    def __init__(self, engine_id: str) -> None:
        self.engine_id = engine_id
        self.claims: dict[str, EngineClaim] = {}
        self.down = False
        self.asked = 0

    def claim_engine(self, cluster: str, database_id: str) -> EngineClaim:
        self.asked += 1
        if self.down:
            raise DockerUnavailable("engine unreachable")
        return self.claims.setdefault(cluster, EngineClaim(self.engine_id, database_id))


class Database:
    def __init__(self, database_id: str) -> None:
        self.database_id = database_id
        self.engines: dict[str, ClusterEngine] = {}

    def installation_id(self) -> str:
        return self.database_id

    def claim_cluster_engine(self, cluster: str, engine_id: str, host: str) -> ClusterEngine:
        return self.engines.setdefault(cluster, ClusterEngine(engine_id, host))


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def refused(kind: RefusalKind) -> float:
    return float(DATA_PLANE_REFUSED.labels(reason=str(kind))._value.get())


def test_the_first_replica_claims_the_cluster_and_one_on_another_engine_refuses() -> None:
    database, first, second = Database(DB), Engine(ENGINE), Engine(OTHER_ENGINE)
    assert DataPlaneGuard("web", "a", database, first).check() is None
    other = DataPlaneGuard("web", "b", database, second).check()
    assert other is not None and other.kind == RefusalKind.OTHER_ENGINE
    assert "claimed from host a" in other.message
    assert refused(RefusalKind.OTHER_ENGINE) == 1


def test_a_second_database_on_a_claimed_engine_touches_nothing() -> None:
    engine = Engine(ENGINE)
    assert DataPlaneGuard("web", "a", Database(DB), engine).check() is None
    second = DataPlaneGuard("web", "a", Database(OTHER_DB), engine).check()
    assert second is not None and second.kind == RefusalKind.OTHER_DATABASE
    assert DataPlaneGuard("api", "a", Database(OTHER_DB), engine).check() is None, (
        "another cluster name on the same engine is another data plane"
    )


def test_a_refused_database_records_no_engine_and_may_take_it_once_released() -> None:
    """The runbook's way out: the other database is gone for good, its claim removed."""
    engine, second = Engine(ENGINE), Database(OTHER_DB)
    assert DataPlaneGuard("web", "a", Database(DB), engine).check() is None
    refused = DataPlaneGuard("web", "a", second, engine).check()
    assert refused is not None and refused.kind == RefusalKind.OTHER_DATABASE
    assert second.engines == {}, "nothing recorded from another database's claim"
    engine.claims.clear()  # docker volume rm berth.claim.web
    engine.engine_id = OTHER_ENGINE  # the claim made again names a new engine id
    assert DataPlaneGuard("web", "a", second, engine).check() is None


def test_a_check_that_cannot_be_made_refuses_and_verdicts_are_kept_fresh_s() -> None:
    clock, engine = Clock(), Engine(ENGINE)
    guard = DataPlaneGuard("web", "a", Database(DB), engine, monotonic=clock)
    engine.down = True
    found = guard.refusal()
    assert found is not None and found.kind == RefusalKind.UNVERIFIED
    engine.down = False
    assert guard.refusal() is found, "kept while fresh"
    clock.now += FRESH_S
    assert guard.refusal() is None and guard.last() is None
    assert engine.asked == 2
    assert refused(RefusalKind.UNVERIFIED) == 0
