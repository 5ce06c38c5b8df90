"""Berth's packaging, really built and run: the Dockerfile FROM a Debian base made with
debootstrap (deploy/build-image.sh, no registry), the image running `berth run` against
the host's Docker socket and a Postgres and converging a deployment; and
deploy/docker-compose.yml checked and brought up with Debian's docker-compose."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration.conftest import (
    EXAMPLE_IMAGE,
    RUN_ID,
    TEST_LABEL,
    Containers,
    Sql,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deploy" / "docker-compose.yml"


@pytest.fixture(scope="module")
def image(docker_api: docker.APIClient) -> Iterator[str]:
    """Berth's image, built by deploy/build-image.sh from this checkout; removed after."""
    tag = f"berth-test-{RUN_ID}:image"
    env = {**os.environ, "BERTH_IMAGE": tag, "BERTH_PYTHON": str(ROOT / ".venv/bin/python")}
    built = subprocess.run(
        ["bash", str(ROOT / "deploy/build-image.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    yield tag
    with contextlib.suppress(docker.errors.APIError):
        docker_api.remove_image(tag, force=True)


def docker_gid() -> str:
    return str(os.stat("/var/run/docker.sock").st_gid)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_image_runs_berth_and_converges_a_deployment(
    image: str, sql: Sql, containers: Containers, cluster: str, docker_api: docker.APIClient
) -> None:
    """The image against this test's Postgres (its unix socket's directory mounted: no
    network needed) and the host's engine. As root here: that socket lives in a directory
    only root may enter; the compose test runs the image as its own user `berth`."""
    socket_dir = sql.url.split("host=")[1].split("&")[0] if "host=" in sql.url else None
    assert socket_dir, f"the test Postgres is reached by a unix socket: {sql.url}"
    daemon = docker_api.create_container(
        image,
        environment={
            "BERTH_DATABASE_URL": sql.url,
            "BERTH_CLUSTER": cluster,
            "BERTH_API_ADDR": "",
            "BERTH_PROXY_ADMIN_URL": "",
        },
        labels={TEST_LABEL: cluster},
        name=f"berth-image-{cluster}",
        user="root",
        host_config=docker_api.create_host_config(
            binds=[
                "/var/run/docker.sock:/var/run/docker.sock",
                f"{socket_dir}:{socket_dir}",
            ],
            group_add=[docker_gid()],
        ),
    )["Id"]
    docker_api.start(daemon)
    try:
        wait_for(lambda: b"berth started" in docker_api.logs(daemon) or
                 docker_api.inspect_container(daemon)["State"]["Status"] != "running",
                 timeout_s=60, what="the daemon in the image started")  # fmt: skip
        logs = docker_api.logs(daemon).decode(errors="replace")
        assert "berth started" in logs, logs[-3000:]
        sql.insert("hello", command=["sleep", "3600"], replicas=2)
        wait_for(lambda: sql.converged("hello"), timeout_s=120, what="hello converged")
        assert len(containers.running("hello")) == 2
        health = wait_for(
            lambda: (
                (state := docker_api.inspect_container(daemon)["State"])
                .get("Health", {})
                .get("Status")
                == "healthy"
                and state
            ),
            timeout_s=60,
            what="the image's HEALTHCHECK passes",
        )
        assert health["Running"]
        logs = docker_api.logs(daemon).decode(errors="replace")
        assert '"event": "elected leader"' in logs, logs[-2000:]
    finally:
        docker_api.remove_container(daemon, force=True, v=True)  # and its /var/lib/berth volume


def compose(project: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "-p", project, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_compose_file_is_valid_and_runs_berth_with_its_embedded_postgres(
    image: str, containers: Containers, cluster: str
) -> None:
    project = f"berth{cluster.replace('-', '')}"
    env = {
        "BERTH_IMAGE": image,
        "BERTH_CLUSTER": cluster,
        "BERTH_DOCKER_GID": docker_gid(),
        "BERTH_HTTP_PORT": str(free_port()),
        "BERTH_API_PORT": str(free_port()),
    }
    missing = compose(project, "config", env={k: v for k, v in env.items() if "GID" not in k})
    assert missing.returncode != 0 and "set BERTH_DOCKER_GID" in missing.stderr
    checked = compose(project, "config", env=env)
    assert checked.returncode == 0, checked.stderr
    assert f"image: {image}" in checked.stdout and "127.0.0.1:" in checked.stdout
    try:
        up = compose(project, "up", "-d", env=env)
        assert up.returncode == 0, up.stdout + up.stderr

        def berth(*args: str, stdin: str | None = None) -> str:
            done = subprocess.run(
                ["docker-compose", "-f", str(COMPOSE_FILE), "-p", project, "exec", "-T",
                 "berth", "berth", *args],
                env={**os.environ, **env}, input=stdin, capture_output=True, text=True,
                timeout=60, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        wait_for(lambda: _ok(lambda: berth("get")), timeout_s=120, what="berth answers")
        spec = {"name": "hello", "image": EXAMPLE_IMAGE, "command": ["sleep", "3600"]}
        berth("apply", "-f", "-", stdin=json.dumps(spec))

        def converged() -> Any:
            rows = json.loads(berth("get", "-o", "json"))
            return [r for r in rows if r["name"] == "hello" and r["converged"]]

        wait_for(converged, timeout_s=120, what="hello converged under compose")
        [berth_container] = containers.api.containers(
            filters={"label": [f"com.docker.compose.project={project}"]}
        )
        inspected = containers.api.inspect_container(berth_container["Id"])
        assert inspected["Config"]["User"] == "berth", "not root: the socket's group suffices"
        assert len(containers.running("hello")) == 1
        health = f"http://127.0.0.1:{env['BERTH_HTTP_PORT']}/healthz"
        probe = subprocess.run(["curl", "-fsS", health], capture_output=True, text=True,
                               timeout=10, check=False)  # fmt: skip
        assert probe.returncode == 0, probe.stderr
        berth("delete", "hello")
        wait_for(lambda: not containers.find("hello"), timeout_s=60, what="hello removed")
    finally:
        down = compose(project, "down", "-v", env=env)
        assert down.returncode == 0, down.stderr


def _ok(call: Any) -> bool:
    try:
        call()
    except AssertionError:
        return False
    return True
