"""The SQL interface itself: constraints that name the field, generation, migrations."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from controller.gateways.postgres import Database
from controller.gateways.postgres_sql import migrations
from tests.integration.conftest import Sql

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ({"name": "Bad_Name"}, "deployments.name: must be a lowercase DNS label"),
        ({"name": "a" * 64}, "deployments.name"),
        ({"image": "with space"}, "deployments.image"),
        ({"replicas": -1}, "deployments.replicas: must be between 0 and 1000"),
        ({"replicas": 1001}, "deployments.replicas"),
        ({"replicas": 2147483647}, "deployments.replicas: must be between 0 and 1000"),
        ({"command": []}, "deployments.command"),
        ({"env": ["not", "an", "object"]}, "deployments.env: must be a JSON object"),
        ({"env": {"A": 1}}, "deployments.env.A: must be a string"),
        ({"env": {"A=B": "c"}}, "deployments.env.A=B: keys must be variable names"),
        ({"env": {"1A": "c"}}, "deployments.env.1A: keys must be variable names"),
        ({"env": {"BIG": "x" * 1_000_000}}, "deployments.env.BIG: is 1000000 bytes"),
        ({"env": {f"V{i}": "x" * 30_000 for i in range(5)}}, "deployments.env: is 150"),
        ({"labels": {"note": "x" * 100_000}}, "deployments.labels.note: is 100000 bytes"),
        ({"labels": {"k" * 300: "v"}}, "deployments.labels: a key of 300 bytes"),
        ({"labels": {"io.berth.replica": "3"}}, "deployments.labels.io.berth.replica"),
        ({"ports": {"container": 80}}, "deployments.ports: must be a JSON array"),
        (
            {"ports": [{"container": 0}]},
            "deployments.ports[0].container: must be an integer from 1 to 65535",
        ),
        ({"ports": [{"container": 80}, {"container": "x"}]}, "deployments.ports[1].container"),
        ({"ports": [{"container": 80, "host": 99999}]}, "deployments.ports[0].host"),
        ({"ports": [{"container": 80, "protocol": "sctp"}]}, "deployments.ports[0].protocol"),
        ({"ports": [{"container": 80, "extra": 1}]}, "deployments.ports[0].extra"),
        (
            {"ports": [{"container": 80}, {"container": 80}]},
            "deployments.ports[1]: publishes 80/tcp twice",
        ),
        (
            {"ports": [{"container": 80, "host": 8080}], "replicas": 2},
            "deployments.ports[0].host: a fixed host port",
        ),
        ({"healthcheck": {"test": "wget"}}, "deployments.healthcheck.test"),
        ({"healthcheck": {"test": ["CMD-SHELL", "a", "b"]}}, "deployments.healthcheck.test"),
        (
            {"healthcheck": {"test": ["CMD", "true"], "interval_s": 0}},
            "deployments.healthcheck.interval_s",
        ),
        (
            {"healthcheck": {"test": ["CMD", "true"], "retries": 1.5}},
            "deployments.healthcheck.retries",
        ),
        ({"healthcheck": {"test": ["CMD", "true"], "every": 1}}, "deployments.healthcheck.every"),
    ],
)
def test_invalid_rows_are_refused_naming_the_field(
    sql: Sql, columns: dict[str, Any], message: str
) -> None:
    values = {"name": "web", **columns}
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        sql.insert(**values)
    assert message in str(caught.value)
    assert sql("SELECT count(*) AS n FROM deployments")[0]["n"] == 0


def test_a_fixed_host_port_belongs_to_one_deployment(sql: Sql) -> None:
    sql.insert("first", ports=[{"container": 8080, "host": 18080}])
    with pytest.raises(psycopg.errors.CheckViolation) as caught:
        sql.insert("second", ports=[{"container": 80}, {"container": 8080, "host": 18080}])
    assert "deployments.ports[1].host: host port 18080/tcp is published by deployment first" in (
        str(caught.value)
    )
    sql.insert("udp", ports=[{"container": 53, "host": 18080, "protocol": "udp"}])  # other proto
    sql("UPDATE deployments SET replicas = 1, env = '{\"A\": \"b\"}' WHERE name = 'first'")
    sql("DELETE FROM deployments WHERE name = 'first'")
    sql.insert("second", ports=[{"container": 8080, "host": 18080}])  # free again
    assert [r["name"] for r in sql("SELECT name FROM deployments ORDER BY name")] == [
        "second",
        "udp",
    ]


@pytest.mark.parametrize(
    "url",
    [
        "https://user:secret@example.test/shop.git",
        "https://user:p@ss@example.test/shop.git",
        "https://token@example.test:8443/a/b@c.git",
        "https://example.test/shop.git",
        "file:///srv/git/shop",
        "git@example.test:shop.git",
    ],
)
def test_the_overview_redacts_git_urls_as_berth_does(sql: Sql, url: str) -> None:
    """The view's redaction (SQL) and the CLI's and API's (Python) agree."""
    from controller.model.source import redact_url

    row = sql(
        "SELECT berth_public_source(jsonb_build_object('git', "
        "jsonb_build_object('url', %s::text))) -> 'git' ->> 'url' AS url",
        [url],
    )
    assert row[0]["url"] == redact_url(url)
    assert "secret" not in row[0]["url"] and "p@ss" not in row[0]["url"]


def test_missing_image_is_refused(sql: Sql) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match=r"deployments\.image: is required"):
        sql("INSERT INTO deployments (name) VALUES ('web')")


def test_generation_is_owned_by_the_database(sql: Sql) -> None:
    sql("INSERT INTO deployments (name, image, generation) VALUES ('web', 'x:1', 42)")
    assert sql("SELECT generation FROM deployments")[0]["generation"] == 1
    sql("UPDATE deployments SET replicas = 3 WHERE name = 'web'")
    sql("UPDATE deployments SET replicas = 3 WHERE name = 'web'")  # no change: no bump
    sql("UPDATE deployments SET generation = 99 WHERE name = 'web'")  # by hand: ignored
    assert sql("SELECT generation FROM deployments")[0]["generation"] == 2
    sql("UPDATE deployments SET env = '{\"A\": \"1\"}' WHERE name = 'web'")
    assert sql("SELECT generation FROM deployments")[0]["generation"] == 3


def test_changes_notify_with_the_deployment_name(sql: Sql) -> None:
    with psycopg.connect(sql.url, autocommit=True) as listener:
        listener.execute("LISTEN berth_deployments")
        sql.insert("web")
        sql("DELETE FROM deployments WHERE name = 'web'")
        payloads = [n.payload for n in listener.notifies(timeout=2, stop_after=2)]
    assert payloads == ["web", "web"]


def test_events_are_append_only(sql: Sql) -> None:
    sql(
        "INSERT INTO deployment_events (deployment, kind, level, message)"
        " VALUES ('w', 'note', 'info', 'x')"
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        sql("UPDATE deployment_events SET message = 'rewritten'")


def test_migrations_are_safe_when_daemons_start_together(database_url: str) -> None:
    errors: list[BaseException] = []
    applied: list[list[int]] = []

    def migrate() -> None:
        try:
            database = Database(database_url, pool_size=2)
            applied.append(database.schema.migrate())
            database.close()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=migrate) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    every_version = [version for version, _, _ in migrations()]
    assert len(every_version) >= 2
    assert sorted(applied, key=len) == [[]] * 5 + [every_version]


def test_the_views_converged_is_the_one_rule(sql: Sql) -> None:
    """`deployment_overview.converged` agrees with `model.phases.converged` on every phase,
    at the current generation and behind it."""
    from controller.model.phases import Phase, converged

    sql.insert("web")
    sql("UPDATE deployments SET replicas = 2 WHERE name = 'web'")  # generation 2
    sql("INSERT INTO deployment_status (name, observed_generation) VALUES ('web', 1)")
    for phase in Phase:
        for observed in (1, 2):
            sql(
                "UPDATE deployment_status SET phase = %s, observed_generation = %s, "
                "phase_progress = %s WHERE name = 'web'",
                [str(phase), observed, 100 if phase == Phase.ACTIVE else 0],
            )
            row = sql("SELECT converged, generation FROM deployment_overview")[0]
            assert row["converged"] == converged(phase, observed, row["generation"]), (
                phase,
                observed,
            )


def test_an_active_status_is_complete(sql: Sql) -> None:
    """Schema 25: `active` says 100%; a row saying otherwise is refused, naming the rule."""
    sql.insert("web")
    sql(
        "INSERT INTO deployment_status (name, phase, phase_progress) VALUES ('web', 'creating', 40)"
    )
    with pytest.raises(psycopg.errors.CheckViolation, match="deployment_status_active_is_complete"):
        sql("UPDATE deployment_status SET phase = 'active' WHERE name = 'web'")
    sql("UPDATE deployment_status SET phase = 'active', phase_progress = 100 WHERE name = 'web'")
    assert sql("SELECT phase, phase_progress FROM deployment_status")[0] == {
        "phase": "active",
        "phase_progress": 100,
    }
