"""The build queue with real builds: one at a time, by priority, cancellable within seconds,
and exactly one successful build of a revision when the daemon is killed mid-build."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from controller.app.daemon import Daemon
from tests.integration.conftest import Sql, berth_ok, report, wait_for
from tests.integration.replicas import ReplicaSet
from tests.integration.sources import APP, commit, dockerfile, make_repo

pytestmark = pytest.mark.integration


def builds_of(sql: Sql, *names: str) -> list[dict[str, Any]]:
    return sql("SELECT * FROM builds WHERE deployment = ANY(%s) ORDER BY id", [list(names)])


def repo_with(tmp_path: Path, name: str, *runs: str) -> str:
    make_repo(tmp_path / name, {"Dockerfile": dockerfile(f"echo {name}", *runs), "app.sh": APP})
    return str(tmp_path / name)


def build_processes(marker: str) -> list[str]:
    """`docker build` processes (or their children) whose command line names `marker`."""
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return [
        line for line in listing.stdout.splitlines() if "docker build" in line and marker in line
    ]


def build_containers(api: docker.APIClient, marker: str) -> list[dict[str, Any]]:
    """The classic builder's intermediate containers running a RUN step naming `marker`."""
    return [c for c in api.containers(all=True) if marker in (c.get("Command") or "")]


def test_one_build_at_a_time_highest_priority_first(
    sql: Sql, start_daemon: Callable[..., Daemon], tmp_path: Path
) -> None:
    start_daemon(build_concurrency=1)
    sql.insert(
        "first", image=None, source={"git": {"url": repo_with(tmp_path, "first", "sleep 2")}}
    )
    wait_for(
        lambda: any(b["status"] == "running" for b in builds_of(sql, "first")), what="first running"
    )
    for name, priority in (("low", 0), ("high", 10), ("mid", 5)):
        url = repo_with(tmp_path, name, "sleep 1")
        sql.insert(name, image=None, source={"git": {"url": url}}, priority=priority)
    names = ["first", "low", "high", "mid"]
    wait_for(
        lambda: (s := sql.status("low")) and s["message"] == "build queued: position 3 of 3",
        what="low waits third",
    )
    wait_for(lambda: all(sql.converged(n) for n in names), timeout_s=180, what="all converged")
    builds = sorted(builds_of(sql, *names), key=lambda b: b["started_at"])
    assert [b["deployment"] for b in builds] == ["first", "high", "mid", "low"]
    for earlier, later in itertools.pairwise(builds):
        assert earlier["finished_at"] <= later["started_at"], "two builds overlapped"


def test_cancel_kills_a_running_build_and_the_old_release_keeps_serving(
    sql: Sql,
    start_daemon: Callable[..., Daemon],
    docker_api: docker.APIClient,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = tmp_path / "app"
    make_repo(repo, {"Dockerfile": dockerfile("echo v1"), "app.sh": APP})
    start_daemon()
    sql.insert("app", image=None, source={"git": {"url": str(repo)}}, replicas=2)
    wait_for(lambda: sql.converged("app"), timeout_s=120, what="v1 serving")
    serving = {c["Id"] for c in docker_api.containers(filters={"label": "io.berth.deployment=app"})}

    marker = f"cancel-me-{tmp_path.name}"
    commit(repo, {"Dockerfile": dockerfile(f"echo {marker} && sleep 300")}, "slow")
    sql(
        "UPDATE deployments SET source = %s WHERE name = 'app'",
        [json.dumps({"git": {"url": str(repo), "ref": "main"}})],
    )
    wait_for(
        lambda: build_containers(docker_api, marker), timeout_s=60, what="RUN sleep 300 running"
    )
    wait_for(
        lambda: (s := sql.status("app")) and s["message"].startswith("build 2: step 2/"),
        what="the deployment shows the build's step",
    )
    status = sql.status("app")
    assert status and status["phase"] == "building" and status["ready_replicas"] == 2, status
    sql.insert("meanwhile", replicas=2)  # builds never hold a reconcile worker
    wait_for(lambda: sql.converged("meanwhile"), what="an image deployment converges meanwhile")
    assert builds_of(sql, "app")[-1]["status"] == "running"

    asked = time.monotonic()
    sql(
        "UPDATE builds SET cancel_requested_at = now() "
        "WHERE deployment = 'app' AND status = 'running'"
    )
    wait_for(
        lambda: builds_of(sql, "app")[-1]["status"] == "cancelled",
        interval_s=0.02,
        what="cancelled",
    )
    cancelled_after = time.monotonic() - asked
    wait_for(lambda: not build_containers(docker_api, marker) and not build_processes(marker),
             timeout_s=10, interval_s=0.05, what="build container and process gone")  # fmt: skip
    gone_after = time.monotonic() - asked
    report(
        capsys,
        f"cancel: build row cancelled {cancelled_after:.2f}s, container gone {gone_after:.2f}s",
    )

    wait_for(lambda: (s := sql.status("app")) and s["phase"] == "failed", what="deployment says so")
    status = sql.status("app")
    assert status is not None and "was cancelled" in status["message"]
    still = {c["Id"] for c in docker_api.containers(filters={"label": "io.berth.deployment=app"})}
    assert still == serving, "the previous release must keep serving"


def test_sigkill_during_build_leaves_exactly_one_successful_build(
    replicas: ReplicaSet, sql: Sql, docker_api: docker.APIClient, tmp_path: Path
) -> None:
    marker = f"killed-mid-build-{tmp_path.name}"
    repo = tmp_path / "app"
    revision = make_repo(
        repo, {"Dockerfile": dockerfile(f"echo {marker} && sleep 4"), "app.sh": APP}
    )
    workspaces = tmp_path / "workspaces"
    first = replicas.start(BERTH_WORKSPACE_DIR=str(workspaces))
    sql.insert("app", image=None, source={"git": {"url": str(repo)}})
    wait_for(lambda: build_containers(docker_api, marker), timeout_s=60, what="building")
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    wait_for(lambda: not build_processes(marker), timeout_s=10, what="docker build died with it")

    replicas.start(BERTH_WORKSPACE_DIR=str(workspaces))
    wait_for(lambda: sql.converged("app"), timeout_s=120, what="converged after the kill")
    builds = builds_of(sql, "app")
    succeeded = [b for b in builds if b["status"] == "succeeded" and b["revision"] == revision]
    assert len(succeeded) == 1, builds
    assert succeeded[0]["attempts"] == 2 and succeeded[0]["term"] == 2
    assert not build_containers(docker_api, marker)
    assert not list(workspaces.glob("*")), "the half-written workspace is discarded"


def test_old_images_are_pruned_and_deleting_cancels_the_build(
    sql: Sql, start_daemon: Callable[..., Daemon], docker_api: docker.APIClient, tmp_path: Path
) -> None:
    repo = tmp_path / "app"
    make_repo(repo, {"Dockerfile": dockerfile("echo v1"), "app.sh": APP})
    start_daemon(image_retention=2)
    source = {"git": {"url": str(repo), "ref": "main"}}
    sql.insert("app", image=None, source=source)

    def serving_newest() -> bool:
        builds = builds_of(sql, "app")
        if not builds:
            return False
        newest = builds[-1]
        running = docker_api.containers(all=True, filters={"label": "io.berth.deployment=app"})
        return newest["status"] == "succeeded" and [c["Image"] for c in running] == [
            newest["image"]
        ]

    for version in (2, 3):
        wait_for(serving_newest, timeout_s=120, what="the newest build serving, alone")
        commit(repo, {"Dockerfile": dockerfile(f"echo v{version}")}, f"v{version}")
        berth_ok(sql.url, "retry", "app")  # the branch moved: build it again
        wait_for(lambda: builds_of(sql, "app")[-1]["status"] == "succeeded", what="rebuilt")
    wait_for(serving_newest, timeout_s=120, what="v3 serving, alone")
    built = [b["image"] for b in builds_of(sql, "app")]
    repository = built[0].split(":")[0]
    kept = {tag for image in docker_api.images(name=repository) for tag in image["RepoTags"]}
    assert kept == set(built[1:]), "the newest two are kept, the oldest removed"
    docker_api.inspect_image("berth-example/busybox:1")  # never built by Berth: untouched

    marker = f"deleted-mid-build-{tmp_path.name}"
    commit(repo, {"Dockerfile": dockerfile(f"echo {marker} && sleep 300")}, "slow")
    berth_ok(sql.url, "retry", "app")
    wait_for(lambda: build_containers(docker_api, marker), timeout_s=60, what="building")
    sql("DELETE FROM deployments WHERE name = 'app'")
    wait_for(lambda: builds_of(sql, "app")[-1]["status"] == "cancelled", what="cancelled")
    wait_for(lambda: not build_containers(docker_api, marker), what="build container gone")
    assert builds_of(sql, "app")[-1]["error"] == "deployment deleted"
