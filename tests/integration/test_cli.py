"""The `berth` command line, run as a real subprocess against a real database."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from controller.app.daemon import Daemon
from tests.integration.conftest import EXAMPLE_IMAGE, Sql, berth, wait_for

pytestmark = pytest.mark.integration


def test_apply_get_describe_delete(daemon: Daemon, sql: Sql, tmp_path: Path) -> None:
    spec = tmp_path / "web.yaml"
    spec.write_text(
        f"name: cliweb\nimage: {EXAMPLE_IMAGE}\nreplicas: 2\nenv:\n  A: b\n"
        "resources:\n  memory: 64Mi\nvolumes:\n  - name: data\n    target: /data\n"
    )
    applied = berth(sql.url, "apply", "-f", str(spec))
    assert applied.returncode == 0, applied.stderr
    assert "deployment/cliweb created (generation 1)" in applied.stdout
    wait_for(lambda: sql.converged("cliweb"), what="cliweb converged")

    listed = berth(sql.url, "get", "--output", "json")
    [row] = json.loads(listed.stdout)
    assert (row["name"], row["phase"], row["ready_replicas"], row["desired_replicas"]) == (
        "cliweb",
        "active",
        2,
        2,
    )
    table = berth(sql.url, "get").stdout
    assert "cliweb" in table and "active" in table and "2/2" in table
    human = berth(sql.url, "describe", "cliweb").stdout
    assert '"resources": {"memory": "64Mi"}' in human, human
    assert '"volumes": [{"name": "data", "target": "/data"}]' in human, human

    described = json.loads(berth(sql.url, "describe", "cliweb", "-o", "json").stdout)
    assert described["spec"]["env"] == {"A": "b"}
    assert described["status"]["phase"] == "active"
    assert any(e["action"] == "create" for e in described["events"])

    again = berth(sql.url, "apply", "-f", str(spec))
    assert "configured (generation 1)" in again.stdout, "an unchanged apply bumps nothing"

    deleted = berth(sql.url, "delete", "cliweb")
    assert deleted.returncode == 0
    wait_for(lambda: sql.status("cliweb") is None, what="cliweb gone")


def test_exit_codes(sql: Sql) -> None:
    assert berth(sql.url, "describe", "nope").returncode == 3
    assert berth(sql.url, "delete", "nope").returncode == 3
    assert berth(sql.url, "get", "nope").returncode == 3
    bad = berth(sql.url, "apply", "-f", "-", stdin="name: web\nimage: x\nports: [{container: 0}]\n")
    assert bad.returncode == 4
    assert "ports[0].container" in bad.stderr
    unreachable = berth("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1", "get")
    assert unreachable.returncode == 5
    assert berth(sql.url, "frobnicate").returncode == 2


def test_apply_accepts_lists_and_several_documents(sql: Sql) -> None:
    documents = f"- name: one\n  image: {EXAMPLE_IMAGE}\n---\nname: two\nimage: {EXAMPLE_IMAGE}\n"
    result = berth(sql.url, "apply", "-f", "-", stdin=documents)
    assert result.returncode == 0, result.stderr
    assert {r["name"] for r in sql("SELECT name FROM deployments")} == {"one", "two"}


def test_a_read_only_role_can_read_and_is_told_why_it_cannot_write(
    sql: Sql, tmp_path: Path
) -> None:
    role = f"berth_reader_{os.getpid()}_{id(sql) % 10_000}"
    sql(f"CREATE ROLE {role} LOGIN")
    try:
        sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        sql.insert("readable")
        url = psycopg.conninfo.make_conninfo(sql.url, user=role)
        listed = berth(url, "get", "-o", "json")
        assert listed.returncode == 0, listed.stderr
        assert [row["name"] for row in json.loads(listed.stdout)] == ["readable"]
        assert berth(url, "describe", "readable").returncode == 0
        spec = tmp_path / "w.yaml"
        spec.write_text(f"name: writable\nimage: {EXAMPLE_IMAGE}\n")
        refused = berth(url, "apply", "-f", str(spec))
        assert refused.returncode == 6, refused.stderr
        assert f"database role '{role}'" in refused.stderr
        assert "permission denied for table deployments" in refused.stderr
    finally:
        sql(f"DROP OWNED BY {role}")
        sql(f"DROP ROLE {role}")


def test_commands_do_not_migrate_and_name_the_remedy(postgres_server_url: str) -> None:
    name = f"berth_empty_{os.getpid()}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        url = psycopg.conninfo.make_conninfo(postgres_server_url, dbname=name)
        result = berth(url, "get")
        assert result.returncode == 7
        assert "run `berth migrate`" in result.stderr
        with psycopg.connect(url) as conn:
            tables = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            ).fetchone()
        assert tables == (0,), "a read command created nothing"
        assert berth(url, "migrate").returncode == 0
        assert berth(url, "get").returncode == 0
    finally:
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_upload_apply_builds_logs_retry_cancel(
    sql: Sql, start_daemon: Callable[..., Daemon], cluster: str, tmp_path: Path
) -> None:
    from tests.integration.sources import APP, dockerfile, make_tar

    archive = make_tar(
        tmp_path / "app.tar.gz", {"Dockerfile": dockerfile("echo from-archive"), "app.sh": APP}
    )
    uploaded = berth(sql.url, "upload", str(archive))
    assert uploaded.returncode == 0, uploaded.stderr
    sha256 = json.loads(uploaded.stdout.splitlines()[-1])["archive"]["sha256"]
    again = berth(sql.url, "upload", str(archive))
    assert "already uploaded" in again.stdout and sha256 in again.stdout
    not_tar = tmp_path / "notes.txt"
    not_tar.write_text("hello")
    refused = berth(sql.url, "upload", str(not_tar))
    assert refused.returncode == 4 and "is not a tar or tar.gz" in refused.stderr

    spec = tmp_path / "app.yaml"
    spec.write_text(f"name: arch\nsource:\n  archive:\n    sha256: {sha256}\nreplicas: 1\n")
    applied = berth(sql.url, "apply", "-f", str(spec))
    assert applied.returncode == 0, applied.stderr
    start_daemon()
    wait_for(lambda: sql.converged("arch"), timeout_s=120, what="arch converged")

    described = berth(sql.url, "describe", "arch")
    assert f"Source:      archive sha256:{sha256[:12]}" in described.stdout, described.stdout
    assert "Build:       1 succeeded" in described.stdout
    listed = berth(sql.url, "builds", "arch")
    assert listed.returncode == 0 and "succeeded" in listed.stdout, listed.stdout
    log = berth(sql.url, "logs", "arch", "--build", "--follow")
    assert (
        log.returncode == 0 and "from-archive" in log.stdout and "build 1 succeeded" in log.stdout
    )
    app_log = berth(sql.url, "logs", "arch", cluster=cluster)
    assert app_log.returncode == 0 and app_log.stdout == "serving\n", app_log

    retried = berth(sql.url, "retry", "arch")
    assert retried.returncode == 0 and "build 2 queued" in retried.stdout, retried.stderr
    wait_for(lambda: sql("SELECT status FROM builds WHERE id = 2")[0]["status"] == "succeeded",
             what="retried build done")  # fmt: skip
    reused = json.loads(berth(sql.url, "builds", "arch", "-o", "json").stdout)
    assert reused[0]["cached"] is True, "the same archive is not built twice"

    nothing = berth(sql.url, "cancel", "arch")
    assert nothing.returncode == 3 and "no build waiting or running" in nothing.stderr
    image_only = berth(sql.url, "retry", "nope")
    assert image_only.returncode == 3
