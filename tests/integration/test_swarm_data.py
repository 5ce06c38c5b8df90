"""What a deployment has besides its image, on the three-node rig (`BERTH_RUNTIME=swarm`):
overlay networks where a deployment's name resolves to every one of its replicas from any
node; a named volume that lives on one node, whose data survives the replica's replacement
and whose home is shown; two replicas sharing a node-local volume refused naming the field;
`retain: false` honoured where the manager can reach the volume and said where it cannot;
a secret's value only in the task's environment, and a new value rolled out."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from controller.app.daemon import Daemon
from controller.gateways.swarm_rig import SwarmRig
from controller.model.names import LABEL_DEPLOYMENT, LABEL_VOLUME_HOME, volume_name
from tests.integration.api_client import client
from tests.integration.conftest import Sql, berth, wait_for
from tests.integration.test_swarm_nodes import message, node_ids

pytestmark = pytest.mark.integration

FIRST = "tok_live_first-Value-51e0aa"
SECOND = "tok_live_second-Value-0b77c4"
GET = r'printf "GET / HTTP/1.0\r\n\r\n"'


def services(rig: SwarmRig, deployment: str, cluster: str) -> list[dict[str, Any]]:
    client = rig.manager().client()
    try:
        found = client.services(filters={"label": [f"{LABEL_DEPLOYMENT}={deployment}"]})
    finally:
        client.close()
    return [s for s in found if s["Spec"]["Labels"].get("io.berth.cluster") == cluster]


def overlay_addresses(rig: SwarmRig, deployment: str, cluster: str, network: str) -> set[str]:
    """The addresses of the deployment's running tasks on `network`, as Swarm assigned them."""
    client = rig.manager().client()
    try:
        ids = [s["ID"] for s in services(rig, deployment, cluster)]
        tasks = client.tasks(filters={"service": ids, "desired-state": "running"})
    finally:
        client.close()
    return {
        address.partition("/")[0]
        for task in tasks
        if task["Status"]["State"] == "running"
        for attachment in task.get("NetworksAttachments") or []
        if attachment["Network"]["Spec"]["Name"] == network
        for address in attachment.get("Addresses") or []
    }


def test_a_deployments_name_resolves_to_every_replica_from_another_node(
    swarm_daemon: Daemon, sql: Sql, rig: SwarmRig, cluster: str
) -> None:
    sql.insert("db", replicas=3, networks=["back"], placement={"max_per_node": 1})
    sql.insert("probe", networks=["back"])
    wait_for(
        lambda: sql.converged("db") and sql.converged("probe"), timeout_s=120, what="converged"
    )
    network = f"berth-{cluster}-net-back"
    client = rig.manager().client()
    try:
        (made,) = client.networks(names=[network])
        assert (made["Driver"], made["Scope"]) == ("overlay", "swarm")
        assert client.inspect_network(made["Id"])["Attachable"] is True
    finally:
        client.close()
    replicas = overlay_addresses(rig, "db", cluster, network)
    assert len(replicas) == 3, replicas
    (probe,) = services(rig, "probe", cluster)
    node, container = rig.task_container(probe["ID"])

    def text(on: Any) -> str:
        return rig.execute(on, container, "busybox", "nslookup", "db")

    answer = wait_for(
        lambda: (
            (found := set(re.findall(r"Address(?: \d+)?:\s+(\d+\.\d+\.\d+\.\d+)", text(node))))
            - {"127.0.0.11"}
            == replicas
            and found
        ),
        timeout_s=30,
        what="db resolving to its three replicas",
    )
    assert replicas <= answer

    # A request to a replica on another node, over the overlay, by address and by name.
    db_nodes = {rig.task_container(s["ID"])[0].address: s for s in services(rig, "db", cluster)}
    assert len(db_nodes) == 3 and node.address in db_nodes, "one db replica on each node"
    for where in (*replicas, "db"):  # busybox's static wget crashes: a request by hand
        page = rig.execute(node, container, "sh", "-c", f"{GET} | nc -w 5 {where} 8080")
        assert "200 OK" in page and "hello from berth" in page, (where, page)


def test_a_volume_lives_on_one_node_and_keeps_its_data_across_a_replacement(
    swarm_daemon: Daemon, sql: Sql, rig: SwarmRig, cluster: str, database_url: str
) -> None:
    sql.insert("store", volumes=[{"name": "data", "target": "/data"}])
    sql.insert("shared", replicas=2, volumes=[{"name": "data", "target": "/data"}])
    first = wait_for(
        lambda: sql.converged("store") and sql("SELECT * FROM replicas WHERE deployment = 'store'"),
        timeout_s=90,
        what="store converged",
    )[0]
    home_label = f"{LABEL_VOLUME_HOME}.{volume_name('store', 'data', cluster)}"
    homes = [a for a, n in labelled_nodes(rig).items() if n.get(home_label) == cluster]
    assert homes == [first["node"].rpartition("@")[2]], "the volume's home is where it runs"
    (service,) = services(rig, "store", cluster)
    node, container = rig.task_container(service["ID"])
    rig.execute(node, container, "sh", "-c", "echo kept > /data/file")
    wide = berth(database_url, "get", "store", "-o", "wide", cluster=cluster)
    assert f"@{node.address}" in wide.stdout, f"the placement is shown: {wide}"

    sql("UPDATE deployments SET env = %s WHERE name = 'store'", [json.dumps({"V": "2"})])
    replaced = wait_for(
        lambda: (
            sql.converged("store")
            and (now := services(rig, "store", cluster))
            and len(now) == 1
            and now[0]["ID"] != service["ID"]
            and now[0]
        ),
        timeout_s=90,
        what="store replaced",
    )
    again, container = rig.task_container(replaced["ID"])
    assert again.address == node.address, "the replacement runs where the volume lives"
    assert rig.execute(again, container, "cat", "/data/file").strip() == "kept"

    said = wait_for(
        lambda: "volumes[0]" in (m := message(sql, "shared")) and m,
        timeout_s=60,
        what="two replicas on one node-local volume refused",
    )
    assert "lives on one node" in said and "2 replicas" in said, said
    assert not services(rig, "shared", cluster), "nothing was started for the refused spec"


def labelled_nodes(rig: SwarmRig) -> dict[str, dict[str, str]]:
    client = rig.manager().client()
    try:
        return {n["Status"]["Addr"]: n["Spec"].get("Labels") or {} for n in client.nodes()}
    finally:
        client.close()


def test_delete_honours_retain_where_the_volume_can_be_reached_and_says_where_not(
    swarm_daemon: Daemon, sql: Sql, rig: SwarmRig, cluster: str
) -> None:
    ids = node_ids(rig)
    manager, far = rig.manager(), rig.nodes[2]
    scratch = [{"name": "tmp", "target": "/t", "retain": False}]
    sql.insert(
        "near", volumes=scratch, placement={"constraints": [f"node.id=={ids[manager.address]}"]}
    )
    sql.insert("far", volumes=scratch, placement={"constraints": [f"node.id=={ids[far.address]}"]})
    wait_for(lambda: sql.converged("near") and sql.converged("far"), timeout_s=90, what="both up")
    for name in ("near", "far"):
        sql("DELETE FROM deployments WHERE name = %s", [name])
    said = "SELECT deployment, message FROM deployment_events WHERE deployment IN ('near', 'far')"

    def both_said() -> list[dict[str, Any]]:
        rows = sql(said)
        near = any("removed volume" in r["message"] for r in rows if r["deployment"] == "near")
        far = any("kept volume" in r["message"] for r in rows if r["deployment"] == "far")
        return rows if near and far else []

    try:
        events = wait_for(both_said, timeout_s=90, what="near's volume removed, far's kept")
    except AssertionError:
        raise AssertionError([r["message"] for r in sql(said)]) from None
    kept = next(r["message"] for r in events if "kept volume" in r["message"])
    assert f"@{far.address}" in kept and "docker volume rm" in kept, kept
    client = manager.client()
    try:
        near_volume = volume_name("near", "tmp", cluster)
        assert not [v for v in client.volumes()["Volumes"] or [] if v["Name"] == near_volume]
    finally:
        client.close()
    homes = labelled_nodes(rig)
    assert not any(volume_name("near", "tmp", cluster) in k for k in homes[manager.address])
    assert f"{LABEL_VOLUME_HOME}.{volume_name('far', 'tmp', cluster)}" in homes[far.address]


def test_a_secret_is_only_in_the_tasks_environment_and_a_new_value_rolls_out(
    start_swarm_daemon: Callable[..., Daemon],
    sql: Sql,
    rig: SwarmRig,
    cluster: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    swarm_daemon = start_swarm_daemon(api_addr="127.0.0.1:0")
    sql("INSERT INTO secrets (name, value) VALUES ('swarm-token', %s)", [FIRST])
    sql.insert("sec", env={"TOKEN": {"secret": "swarm-token"}, "MODE": "live"})
    wait_for(lambda: sql.converged("sec"), timeout_s=90, what="sec converged")
    (service,) = services(rig, "sec", cluster)
    node, container = rig.task_container(service["ID"])
    assert rig.execute(node, container, "sh", "-c", "echo $TOKEN").strip() == FIRST
    labels = json.dumps(
        [service["Spec"]["Labels"], service["Spec"]["TaskTemplate"]["ContainerSpec"]["Labels"]]
    )
    assert FIRST not in labels
    base = f"http://127.0.0.1:{swarm_daemon.http.port}"
    shown = "".join(
        urllib.request.urlopen(f"{base}/{path}", timeout=10).read().decode()
        for path in ("status", "metrics")
    )
    assert FIRST not in shown
    assert swarm_daemon.api is not None
    token = swarm_daemon.database.api.create_token("viewer", "read")[0]
    api = client(swarm_daemon.api.port, token)
    answers = [
        api.get(path).text
        for path in ("/api/v1/deployments", "/api/v1/deployments/sec", "/api/v1/nodes")
    ]
    assert '"secret":"swarm-token"' in answers[1].replace(" ", ""), answers[1][:300]
    assert not any(FIRST in answer for answer in answers)

    sql("UPDATE secrets SET value = %s WHERE name = 'swarm-token'", [SECOND])
    replaced = wait_for(
        lambda: (
            sql.converged("sec")
            and (now := services(rig, "sec", cluster))
            and len(now) == 1
            and now[0]["ID"] != service["ID"]
            and now[0]
        ),
        timeout_s=90,
        what="sec rolled out with the new value",
    )
    node, container = rig.task_container(replaced["ID"])
    assert rig.execute(node, container, "sh", "-c", "echo $TOKEN").strip() == SECOND
    events = json.dumps(sql("SELECT * FROM deployment_events"), default=str)
    logs = caplog.text
    assert "'deployment': 'sec'" in logs, "the daemon's logs were captured"
    for value in (FIRST, SECOND):
        assert value not in events and value not in logs


def test_policy_and_quotas_hold_on_the_swarm_naming_the_field(
    swarm_daemon: Daemon, sql: Sql, rig: SwarmRig, cluster: str
) -> None:
    sql(
        "INSERT INTO quotas (label, value, max_replicas, max_memory_bytes, max_cpus)"
        " VALUES ('team', 'swarm', 3, 256 * 1024 * 1024, 1)"
    )
    team = {"team": "swarm"}
    sql.insert("capped", replicas=2, labels=team, resources={"memory": "64Mi", "cpus": 0.25})
    with pytest.raises(psycopg.errors.CheckViolation) as too_many:
        sql.insert("more", replicas=2, labels=team, resources={"memory": "64Mi", "cpus": 0.25})
    assert str(too_many.value).startswith(
        "deployments.replicas: team=swarm would run 4 replicas in all; its quota is 3"
    )
    with pytest.raises(psycopg.errors.CheckViolation, match=r"deployments\.privileged"):
        sql.insert("root", privileged=True)  # no policy allows it
    sql("INSERT INTO policy (deployment, allow) VALUES ('agent', '{privileged}')")
    sql.insert("agent", privileged=True)  # allowed here, but Swarm services cannot have it
    wait_for(lambda: sql.converged("capped"), timeout_s=90, what="capped converged")
    said = wait_for(
        lambda: "privileged" in (m := message(sql, "agent")) and m, timeout_s=60, what="refused"
    )
    assert "privileged: not supported by the swarm runtime" in said, said
    assert not services(rig, "agent", cluster), "nothing started for it"
    limits = [
        s["Spec"]["TaskTemplate"]["Resources"]["Limits"] for s in services(rig, "capped", cluster)
    ]
    assert limits == [{"MemoryBytes": 64 * 1024 * 1024, "NanoCPUs": 250_000_000}] * 2, limits
    sql("DELETE FROM deployments WHERE name = 'agent'")
    sql("DELETE FROM policy WHERE deployment = 'agent'")


def test_a_volume_driver_lets_replicas_share_a_volume_on_several_nodes(
    swarm_daemon: Daemon, sql: Sql, rig: SwarmRig, cluster: str
) -> None:
    """A driver that shares volumes across nodes is the operator's (a plugin); none is
    installed on the rig, so Swarm finds no node for the tasks and says so ("missing
    plugin"), which the message quotes: the replicas were not refused, nor pinned."""
    volumes = [{"name": "shared", "target": "/data", "driver": "berth-test-absent"}]
    sql.insert("spread", replicas=2, volumes=volumes, placement={"max_per_node": 1})
    said = wait_for(
        lambda: "missing plugin" in (m := message(sql, "spread")) and m,
        timeout_s=60,
        what="the driver's absence said",
    )
    placed = services(rig, "spread", cluster)
    assert len(placed) == 2, "two replicas placed, not refused"
    mounts = [s["Spec"]["TaskTemplate"]["ContainerSpec"]["Mounts"][0] for s in placed]
    assert {m["VolumeOptions"]["DriverConfig"]["Name"] for m in mounts} == {"berth-test-absent"}
    assert not any(
        "io.berth.volume-home" in str(labels) for labels in labelled_nodes(rig).values()
    ), f"pinned to no node: {said}"
