"""Deploying from source with real git, real `docker build`, real Postgres: build and run
from git (file:// and git://) and from archives, reuse of a built revision, the build log,
failing steps, bad sources, and the dead-letter list."""

from __future__ import annotations

import json
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from controller.app.daemon import Daemon
from controller.gateways.postgres import Database
from tests.integration.conftest import Sql, report, wait_for
from tests.integration.sources import APP, commit, dockerfile, git_daemon, make_repo, make_tar

pytestmark = pytest.mark.integration


def build_rows(sql: Sql, deployment: str) -> list[dict[str, Any]]:
    return sql("SELECT * FROM builds WHERE deployment = %s ORDER BY id", [deployment])


def settled(sql: Sql, name: str) -> dict[str, Any] | None:
    status = sql.status(name)
    if status and (status["converged"] or status["phase"] == "failed"):
        return status
    return None


def phases_entered(sql: Sql, name: str) -> list[str]:
    rows = sql(
        "SELECT phase_to FROM deployment_events WHERE deployment = %s AND kind = 'phase' "
        "ORDER BY id",
        [name],
    )
    return [row["phase_to"] for row in rows]


def test_git_source_is_built_run_and_never_rebuilt(
    sql: Sql,
    start_daemon: Callable[..., Daemon],
    docker_api: docker.APIClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = tmp_path / "repo"
    first = make_repo(repo, {"Dockerfile": dockerfile("echo compiling"), "app.sh": APP})
    start_daemon()
    source = {"git": {"url": f"file://{repo}", "ref": "main"}}
    started = time.monotonic()
    sql.insert("web", image=None, source=source, replicas=2)
    wait_for(lambda: sql.converged("web"), timeout_s=120, what="web converged from source")
    report(capsys, f"source -> 2 replicas running: {time.monotonic() - started:.2f}s")

    [build] = build_rows(sql, "web")
    assert build["status"] == "succeeded" and build["revision"] == first
    assert build["duration_s"] > 0 and build["cached"] is False
    entered = phases_entered(sql, "web")
    assert entered.index("pulling_source") < entered.index("building") < entered.index("active")
    lines = [
        row["line"]
        for row in sql(
            "SELECT line FROM build_logs WHERE build_id = %s ORDER BY seq", [build["id"]]
        )
    ]
    assert any(line.startswith("Step 1/") for line in lines) and "compiling" in lines
    image = docker_api.inspect_image(build["image"])
    assert image["RepoTags"] == [build["image"]] and build["image"].startswith("berth-build/")
    running = [
        c["Image"] for c in docker_api.containers(filters={"label": "io.berth.deployment=web"})
    ]
    assert running == [build["image"]] * 2

    # A row change that keeps the source (scaling) builds nothing.
    sql("UPDATE deployments SET replicas = 1 WHERE name = 'web'")
    wait_for(lambda: (s := sql.converged("web")) and s["generation"] == 2, what="scaled")
    assert len(build_rows(sql, "web")) == 1

    # The same commit named differently: resolved, found built, reused (no docker build).
    sql("UPDATE deployments SET source = %s WHERE name = 'web'",
        [json.dumps({"git": {"url": f"file://{repo}", "ref": first}})])  # fmt: skip
    wait_for(lambda: (s := sql.converged("web")) and s["generation"] == 3, what="same commit")
    builds = build_rows(sql, "web")
    assert [b["status"] for b in builds] == ["succeeded", "succeeded"]
    assert builds[1]["cached"] is True and builds[1]["image"] == build["image"]

    # A new commit on the branch, then `berth retry`'s row: re-resolved and built.
    second = commit(repo, {"app.sh": APP.replace("serving", "serving v2")}, "v2")
    sql("UPDATE deployments SET source = %s WHERE name = 'web'",
        [json.dumps(source)])  # fmt: skip
    wait_for(lambda: (s := sql.converged("web")) and s["generation"] == 4, timeout_s=120, what="v2")
    assert build_rows(sql, "web")[-1]["revision"] == second


def test_git_daemon_and_archive_sources(
    sql: Sql, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    served = tmp_path / "served"
    make_repo(served / "app.git", {"Dockerfile": dockerfile(), "app.sh": APP})
    allowed = tmp_path / "archives"
    allowed.mkdir()
    files = {"sub/Dockerfile": dockerfile(), "sub/app.sh": APP}
    host_archive = make_tar(allowed / "app.tar.gz", files)
    uploaded = make_tar(tmp_path / "upload.tar.gz", files)
    database = Database(sql.url, pool_size=1)
    with uploaded.open("rb") as stream:
        sha256, size, new = database.builds.store_archive(stream, "upload.tar.gz", 10_000_000)
    database.close()
    assert new and size == uploaded.stat().st_size
    start_daemon(archive_dirs=[allowed])
    with git_daemon(served) as base_url:
        sql.insert("from-daemon", image=None, source={"git": {"url": f"{base_url}/app.git"}})
        inputs = {"dockerfile": "sub/Dockerfile", "context": "sub"}
        sql.insert("from-upload", image=None, source={"archive": {"sha256": sha256}, **inputs})
        sql.insert(
            "from-path", image=None, source={"archive": {"path": str(host_archive)}, **inputs}
        )
        names = ["from-daemon", "from-upload", "from-path"]
        wait_for(lambda: all(settled(sql, n) for n in names), timeout_s=180, what="all settled")
    for name in names:
        assert sql.converged(name), sql.status(name)
    [upload_build] = build_rows(sql, "from-upload")
    assert upload_build["revision"] == sha256 and upload_build["files"] == 2


def test_failing_step_names_step_and_exit_code_and_others_converge(
    sql: Sql, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    repo = tmp_path / "broken"
    make_repo(repo, {"Dockerfile": dockerfile("echo fine", "echo oops; exit 3"), "app.sh": APP})
    start_daemon()
    sql.insert("broken", image=None, source={"git": {"url": str(repo)}})
    sql.insert("plain")
    wait_for(lambda: settled(sql, "broken"), timeout_s=120, what="broken settled")
    wait_for(lambda: sql.converged("plain"), what="plain converged")
    [build] = build_rows(sql, "broken")
    assert build["status"] == "failed" and build["exit_code"] == 3 and build["attempts"] == 1
    assert "step 3/" in build["error"] and "exit code 3" in build["error"]
    status = sql.status("broken")
    assert status is not None and status["phase"] == "failed"
    assert "exit code 3" in status["message"] and "berth retry broken" in status["message"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"git": {"url": "{repo}", "ref": "nope"}}, "source.git.ref: 'nope' not found"),
        ({"git": {"url": "{repo}"}, "dockerfile": "no/Dockerfile"}, "source.dockerfile: 'no/Do"),
        ({"archive": {"sha256": "0" * 64}}, "source.archive.sha256: no archive"),
        ({"archive": {"path": "/etc/passwd"}}, "outside the allowed directories"),
        ({"archive": {"path": "{evil}", "sha256": "0" * 64}}, "source.archive.sha256: /"),
        ({"archive": {"path": "{evil}"}}, "would be written outside the workspace"),
    ],
)  # fmt: skip
def test_bad_sources_fail_with_a_clear_error(
    sql: Sql,
    start_daemon: Callable[..., Daemon],
    tmp_path: Path,
    source: dict[str, Any],
    expected: str,
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {"Dockerfile": dockerfile(), "app.sh": APP})
    escape = tarfile.TarInfo("../escape.sh")
    escape.size = 4
    evil = make_tar(tmp_path / "evil.tar.gz", {"Dockerfile": dockerfile()}, extra=escape)
    text = json.dumps(source).replace("{repo}", str(repo)).replace("{evil}", str(evil))
    start_daemon(archive_dirs=[tmp_path])
    sql.insert("bad", image=None, source=json.loads(text))
    sql.insert("good")
    wait_for(lambda: settled(sql, "bad"), timeout_s=60, what="bad settled")
    wait_for(lambda: sql.converged("good"), what="good converged")
    status = sql.status("bad")
    assert status is not None and status["phase"] == "failed" and expected in status["message"]
    [build] = build_rows(sql, "bad")
    assert build["status"] == "failed" and expected in build["error"]
    assert not (tmp_path / "escape.sh").exists()


def test_unreachable_remote_is_retried_then_dead_lettered(
    sql: Sql, start_daemon: Callable[..., Daemon]
) -> None:
    from controller.gateways.processes import free_port

    start_daemon(build_max_attempts=2, build_retry_base_s=0.2, build_retry_max_s=0.5)
    sql.insert(
        "unreachable", image=None, source={"git": {"url": f"git://127.0.0.1:{free_port()}/x.git"}}
    )
    wait_for(lambda: settled(sql, "unreachable"), timeout_s=60, what="dead-lettered")
    [build] = build_rows(sql, "unreachable")
    assert build["status"] == "dead" and build["attempts"] == 2
    assert (
        "unable to connect" in build["error"].lower()
        or "connection refused" in build["error"].lower()
    )
    dead = sql("SELECT id FROM builds WHERE status = 'dead'")
    assert [row["id"] for row in dead] == [build["id"]]
    status = sql.status("unreachable")
    assert status is not None and "dead after 2 attempts" in status["message"]
