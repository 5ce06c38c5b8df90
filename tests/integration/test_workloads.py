"""Production workloads against a real Docker engine and Postgres: resource limits, named
volumes and binds, networks with DNS aliases, process options, and the bind allow-list."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import docker
import pytest

from controller.app.daemon import Daemon
from tests.integration.conftest import Containers, Sql, wait_for

pytestmark = pytest.mark.integration

SLEEPER = ["sleep", "3600"]


def inspect(containers: Containers, name: str) -> dict[str, Any]:
    [container] = containers.running(name)
    found: dict[str, Any] = containers.api.inspect_container(container["Id"])
    return found


def run_in(api: docker.APIClient, container_id: str, *command: str) -> tuple[int, str]:
    execution = api.exec_create(container_id, list(command))
    output = api.exec_start(execution["Id"]).decode(errors="replace")
    return int(api.exec_inspect(execution["Id"])["ExitCode"]), output


def test_every_field_reaches_docker_and_a_volume_outlives_its_container(
    start_daemon: Callable[..., Daemon], sql: Sql, containers: Containers, cluster: str
) -> None:
    shared = Path(tempfile.mkdtemp(prefix="berth-bind-"))
    (shared / "config.txt").write_text("from the host\n")
    shared.chmod(0o755)
    start_daemon(allowed_bind_paths=[str(shared)])
    sql.insert(
        "store",
        command=["sh", "-c", "[ -e /data/first ] || hostname > /data/first; exec sleep 3600"],
        resources={"memory": "64Mi", "cpus": 0.5, "pids": 100},
        volumes=[
            {"name": "data", "target": "/data", "retain": False},
            {"name": "cache", "target": "/cache"},
            {"source": str(shared), "target": "/config"},
        ],
        networks=["backend"],
        stop_signal="SIGQUIT",
        stop_grace_s=3,
        read_only=True,
        cap_drop=["ALL"],
        cap_add=["NET_BIND_SERVICE"],
        init=True,
    )
    wait_for(lambda: sql.converged("store"), what="store converged")
    first = inspect(containers, "store")
    host = first["HostConfig"]
    assert host["Memory"] == 64 * 1024 * 1024
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 100
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and host["CapAdd"] == ["NET_BIND_SERVICE"]
    assert host["Init"] is True
    assert host["Privileged"] is False
    assert first["Config"]["StopSignal"] == "SIGQUIT"
    assert first["Config"]["StopTimeout"] == 3
    mounts = {m["Destination"]: m for m in first["Mounts"]}
    assert mounts["/data"]["Type"] == "volume" and mounts["/data"]["RW"] is True
    assert mounts["/data"]["Name"] == f"berth-{cluster}-store-data"
    assert mounts["/config"]["Type"] == "bind" and mounts["/config"]["RW"] is False
    network = f"berth-{cluster}-net-backend"
    assert list(first["NetworkSettings"]["Networks"]) == [network]
    assert "store" in first["NetworkSettings"]["Networks"][network]["Aliases"]
    volume = containers.api.inspect_volume(f"berth-{cluster}-store-data")
    assert volume["Labels"]["io.berth.cluster"] == cluster
    assert volume["Labels"]["io.berth.deployment"] == "store"
    code, output = run_in(containers.api, first["Id"], "cat", "/config/config.txt")
    assert (code, output) == (0, "from the host\n")
    code, _ = run_in(containers.api, first["Id"], "touch", "/config/written")
    assert code != 0, "a bind is read-only unless asked"
    code, _ = run_in(containers.api, first["Id"], "touch", "/not-a-volume")
    assert code != 0, "read_only: the root file system refuses writes"
    written = run_in(containers.api, first["Id"], "cat", "/data/first")[1]
    assert written == first["Config"]["Hostname"] + "\n"

    # Changing the limits rolls out a new container; the named volume comes along.
    sql("UPDATE deployments SET resources = '{\"memory\": \"96Mi\"}' WHERE name = 'store'")
    second = wait_for(
        lambda: (
            (c := containers.running("store"))
            and len(c) == 1  # the old one stops off the pass, with its grace
            and c[0]["Id"] != first["Id"]
            and sql.converged("store")
            and inspect(containers, "store")
        ),
        what="store rolled out with new limits",
    )
    assert second["HostConfig"]["Memory"] == 96 * 1024 * 1024
    assert second["HostConfig"]["NanoCpus"] == 0
    assert run_in(containers.api, second["Id"], "cat", "/data/first")[1] == written

    # Deleted: the volume with retain false goes, the retained one stays.
    sql("DELETE FROM deployments WHERE name = 'store'")
    wait_for(lambda: not containers.find("store"), what="store's containers removed")
    wait_for(
        lambda: (
            not containers.api.volumes(filters={"name": [f"berth-{cluster}-store-data"]}).get(
                "Volumes"
            )
        ),
        what="the retain: false volume removed",
    )
    assert containers.api.inspect_volume(f"berth-{cluster}-store-cache")["Name"]

    def messages() -> list[str]:
        events = sql("SELECT message FROM deployment_events WHERE deployment = 'store' ORDER BY id")
        return [row["message"] for row in events]

    # The removal's event is written with the pass's last write, just after Docker removed the
    # volume: wait for it rather than race it.
    removed = f"removed volume berth-{cluster}-store-data (retain: false)"
    written = wait_for(lambda: (found := messages()) and removed in found and found, what=removed)
    assert f"created volume berth-{cluster}-store-data" in written
    assert f"created network {network}" in written


def test_a_deployment_reaches_another_by_name_on_a_shared_network(
    daemon: Daemon, sql: Sql, containers: Containers, cluster: str
) -> None:
    sql.insert("db", command=SLEEPER, networks=["backend"], replicas=2)
    sql.insert("app", command=SLEEPER, networks=["backend", "frontend"], user="1000:1000")
    sql.insert("loner", command=SLEEPER)
    for name in ("db", "app", "loner"):
        wait_for(partial(sql.converged, name), what=f"{name} converged")
    app = inspect(containers, "app")
    assert app["Config"]["User"] == "1000:1000"
    assert set(app["NetworkSettings"]["Networks"]) == {
        f"berth-{cluster}-net-backend",
        f"berth-{cluster}-net-frontend",
    }
    db_addresses = {
        c["NetworkSettings"]["Networks"][f"berth-{cluster}-net-backend"]["IPAddress"]
        for c in containers.find("db")
    }
    # Docker's embedded DNS answers the alias with every replica of `db`.
    code, output = run_in(containers.api, app["Id"], "busybox", "nslookup", "db")
    assert code == 0, output
    assert db_addresses <= set(output.split()), output
    # (not asked of the one on Docker's default bridge: its DNS is the host's resolver)
    assert list(inspect(containers, "loner")["NetworkSettings"]["Networks"]) == ["bridge"]


def test_a_bind_outside_the_allow_list_fails_naming_the_field(
    daemon: Daemon, sql: Sql, containers: Containers
) -> None:
    sql.insert("outside", command=SLEEPER, volumes=[{"source": "/etc", "target": "/host-etc"}])
    sql.insert("fine", command=SLEEPER)
    status = wait_for(
        lambda: (s := sql.status("outside")) and s["phase"] == "failed" and s,
        what="outside failed",
    )
    assert status["message"].startswith(
        "volumes[0].source: /etc is not under BERTH_ALLOWED_BIND_PATHS (none set)"
    )
    assert status["failure_kind"] == "permanent"
    assert containers.find("outside") == []
    wait_for(lambda: sql.converged("fine"), what="another deployment converged meanwhile")


def test_what_policy_allows_reaches_docker_and_nothing_more(
    daemon: Daemon, sql: Sql, containers: Containers
) -> None:
    sql(
        "INSERT INTO policy (deployment, allow, reason) VALUES"
        " ('agent', '{host_pid,devices,cap:NET_ADMIN}', 'a node agent'),"
        " ('root', '{privileged}', 'a privileged tool')"
    )
    sql.insert(
        "agent", command=SLEEPER, pid_mode="host", devices=["/dev/null"], cap_add=["NET_ADMIN"]
    )
    sql.insert("isolated", command=SLEEPER, network_mode="none", ipc_mode="shareable")
    sql.insert("root", command=SLEEPER, privileged=True)
    for name in ("agent", "isolated"):
        wait_for(partial(sql.converged, name), what=f"{name} converged")
    agent = inspect(containers, "agent")["HostConfig"]
    assert agent["PidMode"] == "host" and agent["Privileged"] is False
    assert agent["CapAdd"] == ["NET_ADMIN"]
    assert agent["Devices"] == [
        {"PathOnHost": "/dev/null", "PathInContainer": "/dev/null", "CgroupPermissions": "rwm"}
    ]
    isolated = inspect(containers, "isolated")
    assert isolated["HostConfig"]["NetworkMode"] == "none"
    assert isolated["HostConfig"]["IpcMode"] == "shareable"
    # Privileged mode reaches Docker. Whether the runtime may grant it is the host's
    # business: this machine's sandbox refuses ("unable to apply caps: operation not
    # permitted"), which fails the deployment for good with the runtime's reason.
    status = wait_for(
        lambda: (s := sql.status("root")) and s["phase"] in ("active", "failed") and s,
        what="root settled",
    )
    [created] = containers.find("root")
    assert containers.api.inspect_container(created["Id"])["HostConfig"]["Privileged"] is True
    if status["phase"] == "failed":
        assert status["failure_kind"] == "permanent", status["message"]
        assert "operation not permitted" in status["message"]
