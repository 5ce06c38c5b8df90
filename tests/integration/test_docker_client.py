"""The Docker gateway's client on the engine's unix socket: every call goes straight to the
socket, never through requests' per-call look at the environment (proxies) and the disk
(~/.netrc), which cost about a quarter of a call's client CPU (see `_one_connection_pool`);
a plain call is not sent through requests' session at all (`docker_transport`); and an
image seen present a moment ago is not asked for again, unless a create finds it gone,
which makes the next look ask the engine."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import docker
import pytest
import requests

from controller.gateways.docker_engine import DockerGateway, translated
from controller.gateways.docker_replicas import replica_from_inspect, replica_from_summary
from controller.gateways.docker_runtime import DockerRuntime
from controller.gateways.docker_transport import short_path
from controller.loop.watchers import RELEVANT_DOCKER_ACTIONS
from controller.model.errors import (
    BerthError,
    DockerConflict,
    DockerUnavailable,
    ImageUnavailable,
    ImageVanished,
    ReplicaVanished,
)
from controller.model.names import LABEL_CLUSTER, LABEL_DEPLOYMENT
from controller.model.replicas import Health, RunState
from controller.model.requests import replica_request
from controller.model.spec import parse_spec
from controller.policy.engine_faults import release_of
from tests.integration.conftest import EXAMPLE_IMAGE, RUN_ID, wait_for

pytestmark = pytest.mark.integration


def _looked(*_: object, **__: object) -> NoReturn:
    raise AssertionError("requests looked at the environment or ~/.netrc")


def test_calls_on_the_unix_socket_never_read_proxies_or_netrc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    gateway = DockerGateway(pool_size=2)
    try:
        monkeypatch.setattr("requests.sessions.get_environ_proxies", _looked)
        monkeypatch.setattr("requests.sessions.get_netrc_auth", _looked)
        gateway.ping()
        assert gateway.image_present(EXAMPLE_IMAGE)
        assert not gateway.image_present("berth-test/never-made:1")
    finally:
        gateway.close()


def test_an_image_removed_after_it_was_seen_is_looked_for_again(
    docker_api: docker.APIClient, cluster: str
) -> None:
    repository, tag = f"berth-test/vanishing-{RUN_ID}", "1"
    image = f"{repository}:{tag}"
    docker_api.tag(EXAMPLE_IMAGE, repository, tag)
    gateway = DockerGateway(pool_size=2, image_seen_s=600.0)
    try:
        assert gateway.ensure_image(image) == "present"
        docker_api.remove_image(image)
        assert gateway.ensure_image(image) == "present", "seen a moment ago: not asked again"
        spec = parse_spec({"name": "vanishing", "image": image})
        with pytest.raises(ImageVanished, match="No such image"):
            DockerRuntime(gateway).place(replica_request(spec, 0, cluster, 1, proof_key=b"k"))
        with pytest.raises(ImageUnavailable, match="could not be pulled"):
            gateway.ensure_image(image)  # asked again: gone, and no registry has it
    finally:
        gateway.close()
        if any(image in (i.get("RepoTags") or []) for i in docker_api.images()):
            docker_api.remove_image(image)


def test_the_engine_version_is_the_one_the_engine_reports() -> None:
    """What the start-up warning of known engine faults reads (policy/engine_faults)."""
    gateway = DockerGateway(pool_size=1)
    try:
        reported = docker.APIClient(version="auto").version(api_version=False)["Version"]
        assert gateway.engine_version() == reported
        assert release_of(gateway.engine_version()) is not None
    finally:
        gateway.close()


def test_the_watchers_stream_carries_only_the_actions_asked_for(
    docker_api: docker.APIClient, cluster: str
) -> None:
    """Every health probe is an exec with events of its own; the watcher's stream, asking for
    `RELEVANT_DOCKER_ACTIONS`, gets the probe's `health_status` and the container's `die`,
    never the execs that an unfiltered stream of the same container carries."""
    gateway = DockerGateway(pool_size=2)
    asked = gateway.container_events(RELEVANT_DOCKER_ACTIONS)
    everything = gateway.container_events()
    seen: dict[str, list[str]] = {"asked": [], "everything": []}
    ended = {"asked": threading.Event(), "everything": threading.Event()}

    def read(key: str, stream: Iterator[tuple[str, str, str]], last: str) -> None:
        with contextlib.suppress(BerthError):
            for _, event_cluster, action in stream:
                if event_cluster == cluster:
                    seen[key].append(action)
                    if action == last:
                        break
        ended[key].set()

    readers = [
        threading.Thread(target=read, args=("asked", asked, "die"), daemon=True),
        threading.Thread(target=read, args=("everything", everything, "die"), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        created = docker_api.create_container(
            EXAMPLE_IMAGE,
            labels={LABEL_DEPLOYMENT: "probed", LABEL_CLUSTER: cluster},
            healthcheck={"test": ["CMD", "true"], "interval": 100_000_000, "retries": 3},
        )
        docker_api.start(created["Id"])
        deadline = time.monotonic() + 30
        while docker_api.inspect_container(created["Id"])["State"]["Health"]["Status"] != (
            "healthy"
        ):
            assert time.monotonic() < deadline, "never healthy"
            time.sleep(0.05)
        docker_api.kill(created["Id"])
        for key in ended:
            assert ended[key].wait(30), f"{key}: no die event"
    finally:
        gateway.close_event_streams()
        gateway.close()
    kinds = {action.split(":")[0] for action in seen["asked"]}
    assert "health_status" in kinds and "die" in kinds
    assert kinds <= RELEVANT_DOCKER_ACTIONS, seen["asked"]
    assert any(action.startswith("exec_") for action in seen["everything"])


def test_plain_calls_take_the_short_path_and_raise_the_same_typed_errors(
    monkeypatch: pytest.MonkeyPatch, cluster: str
) -> None:
    """A list, a create, a start, an inspect and a remove go straight to the socket's pool,
    not through requests' session; an engine's refusal is still docker-py's typed error,
    turned into Berth's by `translated` (a name in use: DockerConflict; a container that is
    gone: ReplicaVanished); a stream (the events) still goes through requests."""
    sent: list[str] = []
    send = requests.Session.send

    def counted(session: requests.Session, prepared: Any, **kwargs: Any) -> Any:
        sent.append(str(prepared.url))
        return send(session, prepared, **kwargs)

    gateway = DockerGateway(pool_size=2)
    runtime = DockerRuntime(gateway)
    monkeypatch.setattr(requests.Session, "send", counted)
    try:
        spec = parse_spec({"name": "short", "image": EXAMPLE_IMAGE, "replicas": 1})
        request = replica_request(spec, 0, cluster, 1, proof_key=b"k")
        replica_id = runtime.place(request)
        runtime.start(replica_id, RunState.CREATED)
        (replica,) = [r for r in runtime.observe("short") if r.cluster == cluster]
        assert (replica.id, replica.state) == (replica_id, RunState.RUNNING)
        assert runtime.inspect(replica_id).status == "running"
        with pytest.raises(DockerConflict, match="already in use"), translated("create"):
            gateway.api.create_container(EXAMPLE_IMAGE, name=request.name)
        runtime.retire(replica_id, 1)
        with pytest.raises(ReplicaVanished, match="No such container"):
            runtime.inspect(replica_id)
        assert sent == []
        stream = gateway.api.events(decode=True, since=0, until=int(time.time()))
        stream.close()
        assert len(sent) == 1
    finally:
        gateway.close()


def test_an_engine_out_of_reach_on_the_short_path_is_unavailable(tmp_path: Path) -> None:
    api = docker.APIClient(base_url=f"unix://{tmp_path / 'nothing.sock'}", version="1.41")
    try:
        assert short_path(api)
        with pytest.raises(DockerUnavailable), translated("list"):
            api.containers(all=True)
    finally:
        api.close()


def test_a_container_inspected_reads_back_as_its_entry_of_the_list(
    docker_api: docker.APIClient, cluster: str
) -> None:
    """What a pass settles on after acting (the containers it changed, inspected) is what a
    list would have shown: every field of the replica, created, running (with a published
    port and a healthcheck) and healthy, then exited."""
    spec = parse_spec(
        {
            "name": "readback",
            "image": EXAMPLE_IMAGE,
            "ports": [{"container": 8080}],
            "healthcheck": {"test": ["CMD", "true"], "interval_s": 0.5},
        }
    )
    request = replica_request(spec, 0, cluster, 1, proof_key=b"k")
    gateway = DockerGateway(pool_size=2)
    runtime = DockerRuntime(gateway)

    def both() -> tuple[Any, Any]:
        (entry,) = docker_api.containers(all=True, filters={"id": replica_id})
        return (
            replica_from_inspect(docker_api.inspect_container(replica_id)),
            replica_from_summary(entry),
        )

    try:
        replica_id = runtime.place(request)
        inspected, listed = both()
        assert inspected == listed and inspected.state == RunState.CREATED
        runtime.start(replica_id)
        inspected, listed = wait_for(lambda: (s := both())[0].health == Health.HEALTHY and s, 30)
        assert inspected == listed and inspected.health == Health.HEALTHY
        assert inspected.endpoints and inspected.endpoints[0].container_port == 8080
        docker_api.kill(replica_id)
        inspected, listed = wait_for(lambda: (s := both())[0].state != RunState.RUNNING and s, 30)
        assert inspected == listed and inspected.state == RunState.EXITED
    finally:
        gateway.close()
