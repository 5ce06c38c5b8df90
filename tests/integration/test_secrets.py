"""Secrets against real Postgres and Docker: the value reaches the container and nothing
else (events, logs, `berth describe`, the API, `/status`, metrics), a new value rolls the
deployments that use it out, and references are checked by the database."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable

import psycopg
import pytest

from controller.app.api_server import ApiServer
from controller.app.daemon import Daemon
from tests.integration.api_client import client
from tests.integration.conftest import Containers, Sql, berth_ok, settings_for, wait_for

pytestmark = pytest.mark.integration

FIRST = "sk_live_first-Value-7c1f0d"
SECOND = "sk_live_second-Value-93b2aa"


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return str(answer.read().decode())


def test_a_secret_reaches_only_its_container_and_a_new_value_rolls_out(
    start_daemon: Callable[..., Daemon],
    sql: Sql,
    containers: Containers,
    cluster: str,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    daemon = start_daemon()
    sql("INSERT INTO secrets (name, value) VALUES ('stripe-key', %s)", [FIRST])
    # The container prints its secret and exits: the crash's log tail goes into events.
    sql.insert(
        "pay",
        command=["sh", "-c", "echo key=$API_KEY; sleep 1; exit 3"],
        env={"API_KEY": {"secret": "stripe-key"}, "MODE": "live"},
    )
    sql.insert("calm", command=["sleep", "3600"], env={"API_KEY": {"secret": "stripe-key"}})
    wait_for(lambda: sql.converged("calm"), what="calm converged")
    [running] = containers.running("calm")
    inspected = containers.api.inspect_container(running["Id"])
    assert f"API_KEY={FIRST}" in inspected["Config"]["Env"], "the value reaches the container"
    wait_for(
        lambda: sql(
            "SELECT 1 FROM deployment_events WHERE deployment = 'pay' AND message LIKE '%key=%'"
        ),
        what="the crash's log tail recorded",
    )
    events = json.dumps(sql("SELECT * FROM deployment_events"), default=str)
    assert FIRST not in events and "key=<env:API_KEY>" in events

    # Everything that shows a deployment shows the reference, never the value.
    described = berth_ok(database_url, "describe", "calm")
    assert '"API_KEY": "<secret:stripe-key>"' in described and FIRST not in described
    assert FIRST not in berth_ok(database_url, "describe", "pay", "-o", "json")
    api_server = ApiServer(settings_for(cluster, database_url, api_addr="127.0.0.1:0"),
                           database_url, None)  # fmt: skip
    api_server.start()
    try:
        api = client(api_server.port, api_server.database.api.create_token("viewer", "read")[0])
        answer = api.get("/api/v1/deployments/calm")
        assert answer.status_code == 200
        assert answer.json()["spec"]["env"]["API_KEY"] == {"secret": "stripe-key"}
        listed = api.get("/api/v1/deployments").text + api.get("/api/v1/deployments/pay").text
        assert FIRST not in answer.text + listed
    finally:
        api_server.stop()
    base = f"http://127.0.0.1:{daemon.http.port}"
    assert FIRST not in fetch(f"{base}/status") + fetch(f"{base}/metrics")

    # A new value: a new generation for every user, a new container with the new value.
    generation = sql("SELECT generation FROM deployments WHERE name = 'calm'")[0]["generation"]
    sql("UPDATE secrets SET value = %s WHERE name = 'stripe-key'", [SECOND])
    assert sql("SELECT version FROM secrets")[0]["version"] == 2
    assert sql("SELECT generation FROM deployments WHERE name = 'calm'")[0]["generation"] == (
        generation + 1
    )
    replaced = wait_for(
        lambda: (
            (c := containers.running("calm"))
            and c[0]["Id"] != running["Id"]
            and sql.converged("calm")
            and containers.api.inspect_container(c[0]["Id"])
        ),
        what="calm rolled out with the new value",
    )
    assert f"API_KEY={SECOND}" in replaced["Config"]["Env"]
    logs = caplog.text
    assert "'deployment': 'calm'" in logs, "the daemon's logs were captured"
    assert FIRST not in logs and SECOND not in logs


def test_references_are_checked_by_the_database(sql: Sql) -> None:
    with pytest.raises(psycopg.errors.CheckViolation) as missing:
        sql.insert("web", env={"KEY": {"secret": "nope"}})
    assert str(missing.value).startswith(
        "deployments.env.KEY: secret 'nope' does not exist (INSERT INTO secrets"
    )
    with pytest.raises(psycopg.errors.CheckViolation) as shaped:
        sql.insert("web", env={"KEY": {"secret": "nope", "value": "x"}})
    assert str(shaped.value).startswith(
        'deployments.env.KEY: must be a string or a secret reference {"secret": "<name>"}'
    )
    sql("INSERT INTO secrets (name, value) VALUES ('db-password', 'hunter2-hunter2')")
    sql.insert("web", env={"KEY": {"secret": "db-password"}})
    with pytest.raises(psycopg.errors.ForeignKeyViolation) as in_use:
        sql("DELETE FROM secrets WHERE name = 'db-password'")
    assert "secret db-password is used by deployment web" in str(in_use.value)
    with pytest.raises(psycopg.errors.CheckViolation, match="secrets_name_pattern"):
        sql("INSERT INTO secrets (name, value) VALUES ('Bad Name', 'x')")
    sql("UPDATE secrets SET value = 'hunter2-hunter2'")  # the same value: no new version
    assert sql("SELECT version FROM secrets")[0]["version"] == 1
    sql("""UPDATE deployments SET secret_versions = '{"db-password": 9}'""")  # by hand: ignored
    [row] = sql("SELECT generation, secret_versions FROM deployments")
    assert row == {"generation": 1, "secret_versions": {"db-password": 1}}
