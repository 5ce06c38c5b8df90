"""The contract suite's backends: each behaviour runs once against the in-memory fakes
(tests/fakes.py) and once against the real gateways (Postgres, the docker runtime), so the
fakes the loop's unit tests run on cannot drift from what the real ones do.

The real side uses the integration fixtures of tests/integration/conftest.py (a fresh
database per test, this test's cluster, whose containers are removed afterwards).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from psycopg.types.json import Jsonb

from controller.gateways.docker_engine import DockerGateway
from controller.gateways.docker_runtime import DockerRuntime
from controller.gateways.postgres import Database
from controller.gateways.swarm_rig import SwarmRig
from controller.gateways.swarm_runtime import SwarmRuntime
from controller.loop.ports import Runtime, Stores
from controller.model.errors import Deposed
from controller.model.records import Fence
from controller.model.replicas import RunState
from tests.fakes import Behaviour, FakeClock, FakeRuntime, FakeStore
from tests.integration.conftest import Sql

pytestmark = pytest.mark.integration


def _trusted() -> None:
    return None


def _ignore(_result: object) -> None:
    return None


@dataclass
class StoreBackend:
    """The loop's Postgres ports, and what an operator and an election do beside them."""

    kind: str
    stores: Stores
    declare: Callable[..., None]  # an operator's INSERT or UPDATE of a deployment
    delete: Callable[[str], None]
    set_secret: Callable[[str, str], None]
    # A new leader claims the next term, or the number given (granted again after a failover).
    new_term: Callable[..., Fence]
    stuck_resumes: Callable[[str], int]
    generation: Callable[[str], int]
    event_messages: Callable[[str], list[str]]  # a deployment's events, oldest first


@pytest.fixture(params=["fake", "postgres"])
def store_backend(request: pytest.FixtureRequest) -> Iterator[StoreBackend]:
    if request.param == "fake":
        store = FakeStore(FakeClock())

        def fake_term(number: int | None = None) -> Fence:
            store.term = store.term + 1 if number is None else number
            store.holder = str(uuid.uuid4())
            return Fence("contract", store.term, store.holder, _trusted)

        def fake_secret(name: str, value: str) -> None:
            store.set_secret(name, value)

        yield StoreBackend(
            "fake",
            Stores.backed_by(store),
            store.apply,
            store.delete,
            fake_secret,
            fake_term,
            lambda name: store.statuses[name].stuck_resumes,
            lambda name: store.generations[name],
            lambda name: [e.message for _, e in store.events if e.deployment == name],
        )
        return
    operator: Sql = request.getfixturevalue("sql")
    database = Database(operator.url, pool_size=2)
    term = 0

    def claim(number: int | None = None) -> Fence:
        nonlocal term
        term = term + 1 if number is None else number
        node = str(uuid.uuid4())
        operator(
            "INSERT INTO berth_leader (cluster, term, holder_id, holder_host, holder_pid, "
            "acquired_at) VALUES ('contract', %(term)s, %(node)s, 'test', 1, now()) "
            "ON CONFLICT (cluster) DO UPDATE SET term = excluded.term, "
            "holder_id = excluded.holder_id",
            {"term": term, "node": node},
        )
        return Fence("contract", term, node, _trusted)

    def declare(name: str, **spec: Any) -> None:
        values = {
            key: Jsonb(value) if isinstance(value, dict | list) and key != "command" else value
            for key, value in {"name": name, **spec}.items()
        }
        columns = ", ".join(f'"{key}"' for key in values)
        updates = ", ".join(f'"{key}" = excluded."{key}"' for key in values if key != "name")
        operator(
            f"INSERT INTO deployments ({columns}) VALUES "
            f"({', '.join(f'%({k})s' for k in values)}) "
            f"ON CONFLICT (name) DO UPDATE SET {updates or 'name = excluded.name'}",
            values,
        )

    def secret(name: str, value: str) -> None:
        operator(
            "INSERT INTO secrets (name, value) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [name, value],
        )

    yield StoreBackend(
        "postgres",
        Stores(
            database.deployments,
            database.status,
            database.mutations,
            database.revisions,
            database.builds,
        ),
        declare,
        lambda name: _ignore(operator("DELETE FROM deployments WHERE name = %s", [name])),
        secret,
        claim,
        lambda name: int(
            operator("SELECT stuck_resumes FROM deployment_status WHERE name = %s", [name])[0][
                "stuck_resumes"
            ]
        ),
        lambda name: int(
            operator("SELECT generation FROM deployments WHERE name = %s", [name])[0]["generation"]
        ),
        lambda name: [
            row["message"]
            for row in operator(
                "SELECT message FROM deployment_events WHERE deployment = %s ORDER BY id", [name]
            )
        ],
    )
    database.close()


@dataclass
class RuntimeBackend:
    """The `Runtime` port, and how a test makes a replica whose process exits; with what the
    runtime declares it does differently (the swarm runtime: Swarm starts a placed replica
    and runs an ended one again itself, and each node finds its own images)."""

    kind: str
    runtime: Runtime
    cluster: str
    exiting_command: Callable[[str, int], tuple[str, ...] | None]
    placed: RunState = RunState.CREATED  # a placed replica, before `start`
    ended: RunState = RunState.EXITED  # a replica whose process ended
    ended_status: str = "exited"  # what `inspect` calls that
    checks_images: bool = True  # `prepare_image` finds a missing image missing


def _real_exit(deployment: str, code: int) -> tuple[str, ...] | None:
    return ("sh", "-c", f"exit {code}")


@pytest.fixture(params=["fake", "docker", "swarm"])
def runtime_backend(request: pytest.FixtureRequest) -> Iterator[RuntimeBackend]:
    if request.param == "fake":
        fake = FakeRuntime(FakeClock())

        def fake_exit(deployment: str, code: int) -> tuple[str, ...] | None:
            fake.behaviours[deployment] = Behaviour(exit_code=code)
            return None

        yield RuntimeBackend("fake", fake, "contract", fake_exit)
        return
    test_cluster: str = request.getfixturevalue("cluster")  # removes its containers after
    if request.param == "docker":
        gateway = DockerGateway(pool_size=2)
        yield RuntimeBackend("docker", DockerRuntime(gateway), test_cluster, _real_exit)
        gateway.close()
        return
    rig: SwarmRig = request.getfixturevalue("rig")  # one per module
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("DOCKER_HOST", rig.manager().url)
    gateway = DockerGateway(pool_size=2)
    swarm = SwarmRuntime(gateway)
    yield RuntimeBackend(
        "swarm",
        swarm,
        test_cluster,
        _real_exit,
        placed=RunState.RESTARTING,
        ended=RunState.RESTARTING,
        ended_status="failed",
        checks_images=False,
    )
    for replica in swarm.observe():
        if replica.cluster == test_cluster:
            swarm.retire(replica.id, 0)
    gateway.close()


def deposed(call: Callable[[], Any]) -> bool:
    try:
        call()
    except Deposed:
        return True
    return False
