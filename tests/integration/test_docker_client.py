"""The Docker gateway's client on the engine's unix socket: every call goes straight to the
socket, never through requests' per-call look at the environment (proxies) and the disk
(~/.netrc), which cost about a quarter of a call's client CPU (see `_one_connection_pool`);
and an image seen present a moment ago is not asked for again, unless a create finds it
gone, which makes the next look ask the engine."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import NoReturn

import docker
import pytest

from controller.gateways.docker_engine import DockerGateway
from controller.gateways.docker_runtime import DockerRuntime
from controller.loop.watchers import RELEVANT_DOCKER_ACTIONS
from controller.model.errors import BerthError, ImageUnavailable, ImageVanished
from controller.model.names import LABEL_CLUSTER, LABEL_DEPLOYMENT
from controller.model.requests import replica_request
from controller.model.spec import parse_spec
from controller.policy.engine_faults import release_of
from tests.integration.conftest import EXAMPLE_IMAGE, RUN_ID

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
