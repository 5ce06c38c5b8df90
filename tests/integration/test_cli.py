"""The `berth` command line, run as a real subprocess against a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.app.daemon import Daemon
from tests.integration.conftest import EXAMPLE_IMAGE, Sql, wait_for

pytestmark = pytest.mark.integration


def berth(
    database_url: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BERTH_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "controller.app.cli", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_apply_get_describe_delete(daemon: Daemon, sql: Sql, tmp_path: Path) -> None:
    spec = tmp_path / "web.yaml"
    spec.write_text(f"name: cliweb\nimage: {EXAMPLE_IMAGE}\nreplicas: 2\nenv:\n  A: b\n")
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
