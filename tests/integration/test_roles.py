"""Least-privilege database roles and quotas against a real Postgres: the operator writes
declarations and secrets but not what Berth records, policy or secret values; the viewer
only reads; the administrator writes policy and quotas; Berth itself converges as its own
role. Quotas by label are enforced at INSERT/UPDATE with the figures named."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import psycopg
import pytest

from controller.app.daemon import Daemon
from controller.gateways.postgres import Database
from controller.model.settings import Settings
from tests.integration.conftest import (
    RUN_ID,
    Containers,
    Sql,
    wait_for,
)

pytestmark = pytest.mark.integration
_logins = itertools.count()


@pytest.fixture
def login(sql: Sql) -> Iterator[Callable[[str], Sql]]:
    """login(kind): a new LOGIN role of this test, member of Berth's role of that kind;
    plain SQL as that role. Dropped afterwards."""
    made: list[str] = []

    def make(kind: str) -> Sql:
        [row] = sql("SELECT role FROM berth_roles WHERE kind = %s", [kind])
        name = f"t{RUN_ID}_{kind}_{next(_logins)}"
        sql(f'CREATE ROLE "{name}" LOGIN IN ROLE "{row["role"]}"')
        made.append(name)
        return Sql(psycopg.conninfo.make_conninfo(sql.url, user=name))

    yield make
    for name in made:
        sql(f'DROP OWNED BY "{name}"')
        sql(f'DROP ROLE "{name}"')


def refused(as_role: Sql, statement: str) -> str:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as denied:
        as_role(statement)
    return str(denied.value)


def test_each_role_may_do_its_part_and_no_more(
    login: Callable[[str], Sql],
    sql: Sql,
    containers: Containers,
    start_daemon: Callable[..., Daemon],
) -> None:
    operator, viewer, admin, berth = (
        login("operator"),
        login("viewer"),
        login("admin"),
        login("daemon"),
    )
    defaults = Settings.model_construct().database_roles
    assert {row["kind"]: row["role"] for row in sql("SELECT * FROM berth_roles")} == defaults

    # The operator declares: a secret, a deployment using it, a webhook; changes a value.
    operator("INSERT INTO secrets (name, value) VALUES ('api-key', 'operator-wrote-this-1')")
    operator(
        "INSERT INTO deployments (name, image, command, env) VALUES ('web', "
        "'berth-example/busybox:1', '{sleep,3600}', '{\"KEY\": {\"secret\": \"api-key\"}}')"
    )
    operator("INSERT INTO webhooks (name, url) VALUES ('hook', 'http://127.0.0.1:9/')")
    assert operator("SELECT name, version FROM secrets") == [{"name": "api-key", "version": 1}]
    assert "secrets" in refused(operator, "SELECT value FROM secrets")
    assert "webhooks" in refused(operator, "SELECT secret FROM webhooks")
    assert "deployment_status" in refused(
        operator, "INSERT INTO deployment_status (name) VALUES ('web')"
    )
    assert "berth_leader" in refused(operator, "UPDATE berth_leader SET term = term + 1")
    assert "policy" in refused(
        operator, "INSERT INTO policy (deployment, allow) VALUES ('web', '{privileged}')"
    )
    assert "quotas" in refused(operator, "INSERT INTO quotas (label, value) VALUES ('a', 'b')")
    assert "deployment_events" in refused(operator, "DELETE FROM deployment_events")
    assert "api_tokens" in refused(operator, "SELECT * FROM api_tokens")
    assert "berth_proof_key" in refused(operator, "SELECT key FROM berth_proof_key")

    # The viewer reads, writes nothing, and never sees a value.
    assert viewer("SELECT name FROM deployment_overview") == [{"name": "web"}]
    assert "secrets" in refused(viewer, "SELECT value FROM secrets")
    assert "berth_proof_key" in refused(viewer, "SELECT key FROM berth_proof_key")
    assert "deployments" in refused(viewer, "UPDATE deployments SET replicas = 2")
    assert "secrets" in refused(viewer, "UPDATE secrets SET value = 'x'")

    # The administrator allows and caps.
    admin("INSERT INTO policy (deployment, allow) VALUES ('agent', '{privileged}')")
    admin("INSERT INTO quotas (label, value, max_replicas) VALUES ('team', 'a', 3)")

    # Berth as its own role (it cannot migrate: the schema is made by its owner) converges
    # the operator's deployment with the secret's value.
    start_daemon(berth.url, migrate_on_start=False)
    wait_for(lambda: sql.converged("web"), what="web converged by Berth's own role")
    [running] = containers.running("web")
    assert (
        "KEY=operator-wrote-this-1"
        in containers.api.inspect_container(running["Id"])["Config"]["Env"]
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        berth("CREATE TABLE berth_evil (x int)")
    operator("DELETE FROM deployments WHERE name = 'web'")
    wait_for(lambda: not containers.find("web"), what="web removed")
    [deleted] = sql("SELECT message FROM deployment_events WHERE action = 'deleted'")
    assert deleted["message"].startswith(f"deployment deleted by t{RUN_ID}_operator_")


def test_quotas_cap_replicas_memory_and_cpus_per_label(sql: Sql) -> None:
    sql(
        "INSERT INTO quotas (label, value, max_replicas, max_memory_bytes, max_cpus)"
        " VALUES ('team', 'payments', 4, 512 * 1024 * 1024, 2)"
    )
    team = {"team": "payments"}
    sql.insert("api", replicas=2, labels=team, resources={"memory": "128Mi", "cpus": 0.5})
    with pytest.raises(psycopg.errors.CheckViolation) as too_many:
        sql.insert("worker", replicas=3, labels=team, resources={"memory": "64Mi", "cpus": 0.1})
    assert str(too_many.value).startswith(
        "deployments.replicas: team=payments would run 5 replicas in all; its quota is 4"
    )
    with pytest.raises(psycopg.errors.CheckViolation) as unlimited:
        sql.insert("worker", replicas=1, labels=team)
    assert str(unlimited.value).startswith(
        "deployments.resources.memory: is required: team=payments has a memory quota"
    )
    with pytest.raises(psycopg.errors.CheckViolation) as memory:
        sql.insert("worker", replicas=2, labels=team, resources={"memory": "200Mi", "cpus": 0.1})
    assert str(memory.value).startswith(
        "deployments.resources.memory: team=payments would use 687865856 bytes of memory in "
        "all; its quota is 536870912"
    )
    with pytest.raises(psycopg.errors.CheckViolation) as cpus:
        sql('UPDATE deployments SET resources = \'{"memory": "128Mi", "cpus": 1.5}\'')
    assert "deployments.resources.cpus: team=payments would use 3.0 CPUs in all" in str(cpus.value)
    sql.insert("worker", replicas=2, labels=team, resources={"memory": "128Mi", "cpus": 0.5})
    sql.insert("other", replicas=10, labels={"team": "search"})  # no quota of its own
    assert sql("SELECT count(*) AS n FROM deployments")[0]["n"] == 3


def test_an_upgrade_by_a_role_that_may_not_create_roles_still_migrates(
    postgres_server_url: str,
) -> None:
    """The schema is made and the grants wait (a WARNING says what to run): an upgrade of a
    running installation must not fail on roles."""
    owner, database = f"t{RUN_ID}_owner", f"berth_roles_{RUN_ID}"
    roles = {
        kind: f"t{RUN_ID}_missing_{kind}" for kind in ("operator", "viewer", "daemon", "admin")
    }
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{owner}" LOGIN')
        conn.execute(f'CREATE DATABASE "{database}" OWNER "{owner}"')
    try:
        url = psycopg.conninfo.make_conninfo(postgres_server_url, dbname=database, user=owner)
        migrated = Database(url, pool_size=1)
        try:
            assert migrated.schema.migrate(roles)[-1] >= 15
        finally:
            migrated.close()
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            made = conn.execute(
                "SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", [list(roles.values())]
            ).fetchone()
            assert made == (0,)
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{owner}"')
