"""Images through a registry, on the three-node rig (`BERTH_RUNTIME=swarm`, `BERTH_REGISTRY`
naming a private `docker-registry` on the rig's link): a git-sourced deployment of three
replicas is built once, on the manager Berth talks to, pushed, and runs on all three nodes
pinned by digest; the two nodes that did not build it never had the build's tag, only the
image pulled from the registry by its digest."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.app.daemon import Daemon
from controller.gateways.registry_server import PrivateRegistry
from controller.gateways.swarm_rig import SwarmRig
from controller.loop.janitor import Swept
from controller.model.names import LABEL_DEPLOYMENT, build_repository
from tests.integration.api_client import client
from tests.integration.conftest import Sql, berth, report, wait_for
from tests.integration.sources import APP, commit, dockerfile, make_repo

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(rig: SwarmRig) -> Iterator[PrivateRegistry]:
    made = PrivateRegistry(rig.registry_host)
    yield made
    made.close()


def test_a_source_deployment_is_built_once_and_runs_on_every_node_pinned_by_digest(
    start_swarm_daemon: Callable[..., Daemon],
    registry: PrivateRegistry,
    sql: Sql,
    rig: SwarmRig,
    cluster: str,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {"Dockerfile": dockerfile("echo compiling"), "app.sh": APP})
    daemon = start_swarm_daemon(
        registry=registry.address,
        registry_config=str(registry.config_path),
        api_addr="127.0.0.1:0",
        image_retention=1,
        retention_interval_s=3600,  # swept below, when the test says
    )
    started = time.monotonic()
    sql.insert(
        "web",
        image=None,
        source={"git": {"url": f"file://{repo}", "ref": "main"}},
        replicas=3,
        placement={"max_per_node": 1},
    )
    wait_for(lambda: sql.converged("web"), timeout_s=180, what="web built and converged")
    report(capsys, f"swarm: source -> 3 replicas on 3 nodes: {time.monotonic() - started:.2f}s")
    timeline = sql(
        "SELECT extract(epoch FROM at) AS t, message FROM deployment_events "
        "WHERE deployment = 'web' ORDER BY id"
    )
    first = float(timeline[0]["t"])
    report(capsys, "timeline: " + "; ".join(
        f"{float(e['t']) - first:.2f} {e['message'][:50]}" for e in timeline))  # fmt: skip

    [build] = sql("SELECT * FROM builds WHERE deployment = 'web'")
    pinned = str(build["image"])
    repository = build_repository("web", cluster)
    assert build["status"] == "succeeded"
    assert pinned.startswith(f"{registry.address}/{repository}@sha256:"), pinned
    assert repository in registry.repositories()
    logs = [
        r["line"] for r in sql("SELECT line FROM build_logs WHERE build_id = %s", [build["id"]])
    ]
    assert any(f"runs as {pinned}" in line for line in logs), logs[-5:]

    manager = rig.manager().client()
    try:
        services = manager.services(filters={"label": [f"{LABEL_DEPLOYMENT}=web"]})
        images = {s["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] for s in services}
    finally:
        manager.close()
    assert images == {pinned}, "every replica runs exactly what was built"
    rows = sql("SELECT node FROM replicas WHERE deployment = 'web' AND state = 'running'")
    assert {str(r["node"]).rpartition("@")[2] for r in rows} == {n.address for n in rig.nodes}
    tag = f"{repository}:"
    for node in rig.nodes[1:]:  # the nodes that did not build it
        on_node = node.client()
        try:
            held = on_node.images()
        finally:
            on_node.close()
        tags = [t for image in held for t in image.get("RepoTags") or []]
        digests = [d for image in held for d in image.get("RepoDigests") or []]
        assert not any(t.startswith(tag) for t in tags), f"never built on {node.name}: {tags}"
        assert pinned in digests, f"pulled by digest on {node.name}: {digests}"

    # Its output, from a replica on a node Berth does not talk to: the CLI and the API.
    monkeypatch.setenv("BERTH_RUNTIME", "swarm")
    far = next(
        r["slot"]
        for r in sql("SELECT slot, node FROM replicas WHERE deployment = 'web'")
        if not str(r["node"]).endswith("@" + rig.manager().address)
    )
    shown = berth(database_url, "logs", "web", "--replica", str(far), cluster=cluster)
    assert shown.returncode == 0 and "serving" in shown.stdout, shown
    assert daemon.api is not None
    api = client(daemon.api.port, daemon.database.api.create_token("viewer", "read")[0])
    answer = api.get(f"/api/v1/deployments/web/logs?replica={far}&tail=5")
    assert answer.status_code == 200 and "serving" in answer.text, answer.text
    # The nodes, as the dashboard shows them: the three, each running one of web's replicas.
    listed = wait_for(
        lambda: (n := api.get("/api/v1/nodes").json()) and sum(r["replicas"] for r in n) == 3 and n,
        timeout_s=30,
        what="the nodes counting web's replicas",
    )
    assert sorted(r["address"] for r in listed) == sorted(n.address for n in rig.nodes)
    assert all((r["state"], r["replicas"]) == ("ready", 1) for r in listed), listed

    # A new commit: built again, pushed, and every node runs the new digest.
    commit(repo, {"app.sh": APP.replace("serving", "serving v2")}, "v2")
    retried = berth(database_url, "retry", "web", cluster=cluster)
    assert retried.returncode == 0, retried.stderr

    def running_v2() -> str:
        builds = sql("SELECT status, image FROM builds WHERE deployment = 'web' ORDER BY id")
        newest = builds[-1]
        if len(builds) < 2 or newest["status"] != "succeeded" or not sql.converged("web"):
            return ""
        manager = rig.manager().client()
        try:
            services = manager.services(filters={"label": [f"{LABEL_DEPLOYMENT}=web"]})
        finally:
            manager.close()
        images = {s["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] for s in services}
        return str(newest["image"]) if images == {newest["image"]} else ""

    try:
        second = wait_for(running_v2, timeout_s=180, what="v2 built and on every replica")
    except AssertionError:
        events = sql("SELECT message FROM deployment_events ORDER BY id")
        raise AssertionError(
            (
                sql("SELECT id, status, error, image FROM builds"),
                [e["message"] for e in events][-12:],
            )
        ) from None
    assert second != pinned and second.startswith(f"{registry.address}/{repository}@sha256:")
    v2 = berth(database_url, "logs", "web", "--replica", str(far), cluster=cluster)
    assert "serving v2" in v2.stdout, v2

    # Retention (1 image) as today: the janitor deletes the first manifest from the registry,
    # keeps the serving one, and collects the registry's garbage.
    blobs = registry.blobs()
    swept = daemon.janitor.sweep()
    assert swept is not None and swept.manifests == 1, swept
    assert registry.manifest_status(pinned) == 404 and registry.manifest_status(second) == 200
    assert registry.blobs() < blobs, "garbage collection freed the first image's own blobs"
    assert daemon.janitor.sweep() == Swept(), "a second sweep finds nothing"
