"""Convergence against a real Postgres and a real Docker engine, through plain SQL."""

from __future__ import annotations

from collections import Counter

import pytest

from controller.app.daemon import Daemon
from controller.model.requests import replica_request
from controller.model.spec import parse_spec
from tests.integration.conftest import (
    EXAMPLE_IMAGE,
    EXAMPLE_IMAGE_2,
    Containers,
    Sql,
    settled,
    wait_for,
)

pytestmark = pytest.mark.integration

HEALTHCHECK = {
    "test": ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"],
    "interval_s": 0.5,
    "timeout_s": 2,
    "retries": 3,
}


def spec_hashes(containers: Containers, name: str) -> set[str]:
    return {c["Labels"]["io.berth.spec-hash"] for c in containers.find(name)}


def test_insert_creates_a_running_labelled_container(
    daemon: Daemon, sql: Sql, containers: Containers
) -> None:
    sql.insert("web", ports=[{"container": 8080}], env={"GREETING": "hi"})
    status = wait_for(lambda: sql.converged("web"), what="web converged")
    assert status["phase"] == "active" and status["ready_replicas"] == 1
    [container] = containers.running("web")
    labels = container["Labels"]
    assert labels["io.berth.deployment"] == "web"
    assert labels["io.berth.replica"] == "0"
    assert len(labels["io.berth.spec-hash"]) == 16
    # slot and revision: berth-<cluster>-<deployment>-<replica>-<spec hash, 8 characters>
    revision = labels["io.berth.spec-hash"][:8]
    assert container["Names"] == [f"/berth-{containers.cluster}-web-0-{revision}"]
    inspected = containers.api.inspect_container(container["Id"])
    assert "GREETING=hi" in inspected["Config"]["Env"]
    [binding] = inspected["HostConfig"]["PortBindings"]["8080/tcp"]
    assert binding["HostIp"] == "127.0.0.1", "published on loopback (BERTH_PUBLISH_ADDRESS)"
    phases = [
        row["phase_to"]
        for row in sql(
            "SELECT phase_to FROM deployment_events"
            " WHERE deployment = 'web' AND kind = 'phase' ORDER BY id"
        )
    ]
    assert phases == [
        "queued",
        "pulling_image",
        "creating",
        "starting",
        "health_check",
        "active",
    ] or phases == ["queued", "pulling_image", "creating", "starting", "active"]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("image", EXAMPLE_IMAGE_2),
        ("env", {"MODE": "changed"}),
        ("command", ["sleep", "3600"]),
    ],
)
def test_spec_change_replaces_containers(
    daemon: Daemon, sql: Sql, containers: Containers, column: str, value: object
) -> None:
    sql.insert("app", replicas=2)
    wait_for(lambda: sql.converged("app"), what="app converged")
    before_ids = {c["Id"] for c in containers.find("app")}
    before_hashes = spec_hashes(containers, "app")
    from psycopg.types.json import Jsonb

    sql(
        f"UPDATE deployments SET {column} = %s WHERE name = 'app'",
        [Jsonb(value) if isinstance(value, dict) else value],
    )
    status = wait_for(
        lambda: (s := sql.converged("app")) and s["generation"] == 2 and s,
        what="app at generation 2",
    )
    assert status["observed_generation"] == 2
    after = settled(sql, containers, "app", 2)
    assert len(after) == 2 and all(c["State"] == "running" for c in after)
    assert not before_ids & {c["Id"] for c in after}
    assert spec_hashes(containers, "app").isdisjoint(before_hashes)


def test_scale_up_and_down_without_replacing(
    daemon: Daemon, sql: Sql, containers: Containers
) -> None:
    sql.insert("scaled", replicas=1)
    wait_for(lambda: sql.converged("scaled"), what="1 replica")
    first_id = containers.find("scaled")[0]["Id"]
    sql("UPDATE deployments SET replicas = 3 WHERE name = 'scaled'")
    wait_for(lambda: (s := sql.converged("scaled")) and s["ready_replicas"] == 3, what="3 replicas")
    slots = containers.by_replica("scaled")
    assert sorted(slots) == [0, 1, 2] and all(len(c) == 1 for c in slots.values())
    assert slots[0][0]["Id"] == first_id, "scaling up must not replace existing replicas"
    sql("UPDATE deployments SET replicas = 0 WHERE name = 'scaled'")
    wait_for(
        lambda: (s := sql.converged("scaled")) and s["desired_replicas"] == 0, what="0 replicas"
    )
    assert settled(sql, containers, "scaled", 0) == []


def test_delete_removes_containers_and_status(
    daemon: Daemon, sql: Sql, containers: Containers
) -> None:
    sql.insert("doomed", replicas=2)
    wait_for(lambda: sql.converged("doomed"), what="doomed converged")
    sql("DELETE FROM deployments WHERE name = 'doomed'")
    wait_for(lambda: not containers.find("doomed"), what="containers removed")
    wait_for(lambda: sql.status("doomed") is None, what="status row dropped")
    removed = sql(
        "SELECT count(*) AS n FROM deployment_events"
        " WHERE deployment = 'doomed' AND action = 'remove'"
    )
    assert removed[0]["n"] == 2


def test_force_removed_container_is_recreated(
    daemon: Daemon, sql: Sql, containers: Containers
) -> None:
    sql.insert("drift", replicas=2)
    wait_for(lambda: sql.converged("drift"), what="drift converged")
    victim = containers.by_replica("drift")[1][0]["Id"]
    containers.api.remove_container(victim, force=True)
    wait_for(
        lambda: (
            len(containers.running("drift")) == 2
            and victim not in {c["Id"] for c in containers.find("drift")}
        ),
        what="replica 1 recreated",
    )
    wait_for(lambda: sql.converged("drift"), what="converged again")
    assert sorted(containers.by_replica("drift")) == [0, 1]


def test_stopped_container_is_started_again(
    daemon: Daemon, sql: Sql, containers: Containers
) -> None:
    sql.insert("stopper")
    wait_for(lambda: sql.converged("stopper"), what="converged")
    [container] = containers.find("stopper")
    containers.api.stop(container["Id"], timeout=1)
    wait_for(
        lambda: [c["Id"] for c in containers.running("stopper")] == [container["Id"]],
        what="the same container running again",
    )
    events = sql(
        "SELECT message FROM deployment_events"
        " WHERE deployment = 'stopper' AND action = 'start' ORDER BY id"
    )
    assert "(exited; restart 1)" in events[-1]["message"]


def test_stray_managed_containers_are_removed(
    daemon: Daemon, sql: Sql, containers: Containers
) -> None:
    sql.insert("keeper")
    wait_for(lambda: sql.converged("keeper"), what="keeper converged")
    cluster_label = {"io.berth.cluster": containers.cluster}
    orphan = containers.run_unmanaged(
        f"stray-orphan-{containers.cluster}",
        {**cluster_label, "io.berth.deployment": "ghost", "io.berth.replica": "0"},
    )
    surplus = containers.run_unmanaged(
        f"stray-surplus-{containers.cluster}",
        {
            **cluster_label,
            "io.berth.deployment": "keeper",
            "io.berth.replica": "7",
            "io.berth.spec-hash": "0000000000000000",
        },
    )

    def remaining() -> set[str]:
        return {c["Id"] for c in containers.api.containers(all=True)}

    wait_for(
        lambda: orphan not in remaining() and surplus not in remaining(), what="strays removed"
    )
    assert len(containers.find("keeper")) == 1


def test_unmanaged_containers_survive(daemon: Daemon, sql: Sql, containers: Containers) -> None:
    bystander = containers.run_unmanaged(f"bystander-{containers.cluster}")
    # Holds the exact name Berth wants, but without Berth's labels: Berth must not touch it.
    wanted = replica_request(
        parse_spec({"name": "squat", "image": EXAMPLE_IMAGE}), 0, containers.cluster, 1
    )
    squatter = containers.run_unmanaged(wanted.name)
    sql.insert("squat")
    status = wait_for(
        lambda: (s := sql.status("squat")) and s["phase"] == "failed" and s, what="squat failed"
    )
    assert "without Berth's labels" in status["message"]
    sql.insert("neighbour", replicas=2)
    wait_for(lambda: sql.converged("neighbour"), what="neighbour converged")
    # A full resync that completes after both containers exist, and every pass it queued:
    # only then has Berth had its chance to touch them.
    before = daemon.controller.last_resync_ok or 0.0
    daemon.controller.request_resync()
    wait_for(
        lambda: (daemon.controller.last_resync_ok or 0.0) > before,
        what="a full resync completed",
    )
    wait_for(lambda: daemon.queue.busy(within_s=1.0) == 0, what="the passes it queued done")
    for container_id in (bystander, squatter):
        assert containers.api.inspect_container(container_id)["State"]["Running"]


def test_missing_image_fails_clearly_while_others_converge(
    daemon: Daemon, sql: Sql, containers: Containers
) -> None:
    sql.insert("broken", image="berth-example/does-not-exist:1")
    sql.insert("fine", replicas=2)
    wait_for(lambda: sql.converged("fine"), what="fine converged")
    status = wait_for(
        lambda: (s := sql.status("broken")) and s["phase"] == "failed" and s, what="broken failed"
    )
    assert "berth-example/does-not-exist:1" in status["message"]
    assert "not present locally" in status["message"]
    assert status["failure_kind"] == "permanent"
    assert containers.find("broken") == []
    # Fixing the spec retries at once.
    sql("UPDATE deployments SET image = %s WHERE name = 'broken'", [EXAMPLE_IMAGE])
    wait_for(lambda: sql.converged("broken"), what="broken fixed")


def test_an_image_appearing_retries_a_deployment_that_lacked_it(
    daemon: Daemon, sql: Sql, containers: Containers
) -> None:
    missing = f"berth-example/appears-{containers.cluster}:1"
    sql.insert("waiting", image=missing)
    status = wait_for(
        lambda: (s := sql.status("waiting")) and s["phase"] == "failed" and s, what="failed"
    )
    assert status["failure_kind"] == "permanent"
    assert status["next_attempt_at"] is not None  # its slow retry: ten minutes away
    repository, tag = missing.rsplit(":", 1)
    containers.api.tag(EXAMPLE_IMAGE, repository, tag)  # an operator loads the image
    try:
        wait_for(lambda: sql.converged("waiting"), timeout_s=30, what="retried when it appeared")
    finally:
        sql("DELETE FROM deployments WHERE name = 'waiting'")
        wait_for(lambda: not containers.find("waiting"), what="removed")
        containers.api.remove_image(missing)


def test_failed_update_keeps_old_containers(
    daemon: Daemon, sql: Sql, containers: Containers
) -> None:
    sql.insert("careful", replicas=2)
    wait_for(lambda: sql.converged("careful"), what="converged")
    before = {c["Id"] for c in containers.running("careful")}
    sql("UPDATE deployments SET image = 'berth-example/missing:9' WHERE name = 'careful'")
    wait_for(lambda: (s := sql.status("careful")) and s["phase"] == "failed", what="failed")
    assert {c["Id"] for c in containers.running("careful")} == before


def test_healthcheck_gates_readiness(daemon: Daemon, sql: Sql, containers: Containers) -> None:
    sql.insert("healthy", replicas=2, healthcheck=HEALTHCHECK)
    status = wait_for(lambda: sql.converged("healthy"), what="healthy converged")
    assert status["ready_replicas"] == 2
    assert all("(healthy)" in c["Status"] for c in containers.find("healthy"))
    phases = [
        r["phase_to"]
        for r in sql(
            "SELECT phase_to FROM deployment_events"
            " WHERE deployment = 'healthy' AND kind = 'phase' ORDER BY id"
        )
    ]
    assert phases[-2:] == ["health_check", "active"]


def test_many_deployments_converge_and_change(
    daemon: Daemon, sql: Sql, containers: Containers
) -> None:
    names = [f"fleet-{i:02d}" for i in range(20)]
    sql(
        "INSERT INTO deployments (name, image, replicas) SELECT unnest(%s::text[]), %s, 1",
        [names, EXAMPLE_IMAGE],
    )
    wait_for(lambda: all(sql.converged(n) for n in names), timeout_s=120, what="20 converged")
    sql("UPDATE deployments SET replicas = 2 WHERE name = ANY(%s)", [names[:5]])
    sql('UPDATE deployments SET env = \'{"V": "2"}\' WHERE name = ANY(%s)', [names[5:10]])
    sql("DELETE FROM deployments WHERE name = ANY(%s)", [names[10:15]])
    expected = {n: 2 for n in names[:5]} | {n: 1 for n in names[5:10] + names[15:]}

    def settled() -> bool:
        counts = Counter(c["Labels"]["io.berth.deployment"] for c in containers.find())
        return counts == expected and all(sql.converged(n) for n in expected)

    wait_for(settled, timeout_s=120, what="fleet settled")
    slots = Counter(
        (c["Labels"]["io.berth.deployment"], c["Labels"]["io.berth.replica"])
        for c in containers.find()
    )
    assert max(slots.values()) == 1, "no replica slot may hold two containers"
    assert sql("SELECT count(*) AS n FROM deployment_status")[0]["n"] == 15
