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
from controller.model.names import LABEL_DEPLOYMENT, build_repository
from tests.integration.conftest import Sql, report, wait_for
from tests.integration.sources import APP, dockerfile, make_repo

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
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = tmp_path / "repo"
    make_repo(repo, {"Dockerfile": dockerfile("echo compiling"), "app.sh": APP})
    start_swarm_daemon(registry=registry.address)
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

    client = rig.manager().client()
    try:
        services = client.services(filters={"label": [f"{LABEL_DEPLOYMENT}=web"]})
        images = {s["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] for s in services}
    finally:
        client.close()
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
