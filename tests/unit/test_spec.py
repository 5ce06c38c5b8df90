"""The deployment spec: validation messages name the field; the hash ignores replicas."""

from __future__ import annotations

from typing import Any

import pytest

from controller.gateways.docker_runtime import docker_arguments
from controller.model.errors import InvalidSpec
from controller.model.names import container_name
from controller.model.requests import replica_request
from controller.model.spec import DeploymentSpec, parse_spec

BASE: dict[str, Any] = {"name": "web", "image": "berth-example/busybox:1"}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "Web"}, "name"),
        ({"name": "-web"}, "name"),
        ({"name": "a" * 64}, "name"),
        ({"image": ""}, "image"),
        ({"image": "has space"}, "image"),
        ({"replicas": -1}, "replicas"),
        ({"ports": [{"container": 0}]}, "ports[0].container"),
        ({"ports": [{"container": 80, "protocol": "sctp"}]}, "ports[0].protocol"),
        ({"ports": [{"container": 80, "host": 70000}]}, "ports[0].host"),
        ({"env": {"A": 1}}, "env.A"),
        ({"labels": {"io.berth.replica": "1"}}, "labels"),
        ({"healthcheck": {"test": ["WGET", "x"]}}, "healthcheck.test"),
        ({"healthcheck": {"test": ["CMD", "true"], "retries": 0}}, "healthcheck.retries"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_invalid_specs_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec) as caught:
        parse_spec({**BASE, **changes})
    assert str(caught.value).startswith(field), str(caught.value)


def test_fixed_host_port_with_several_replicas_is_refused() -> None:
    with pytest.raises(InvalidSpec, match="fixed host port"):
        parse_spec({**BASE, "replicas": 2, "ports": [{"container": 80, "host": 8080}]})


def test_hash_ignores_replicas_but_not_the_container_shape() -> None:
    one = parse_spec(BASE)
    assert one.spec_hash == parse_spec({**BASE, "replicas": 5}).spec_hash
    for change in (
        {"image": "other:1"},
        {"env": {"A": "b"}},
        {"command": ["sleep", "1"]},
        {"ports": [{"container": 80}]},
        {"labels": {"team": "x"}},
        {"healthcheck": {"test": ["CMD", "true"]}},
    ):
        assert parse_spec({**BASE, **change}).spec_hash != one.spec_hash, change


def test_hash_is_stable_across_key_order() -> None:
    a = parse_spec({**BASE, "env": {"A": "1", "B": "2"}})
    b = parse_spec({**BASE, "env": {"B": "2", "A": "1"}})
    assert a.spec_hash == b.spec_hash


def test_container_config_carries_berth_labels_and_docker_units() -> None:
    spec = DeploymentSpec.model_validate(
        {
            **BASE,
            "labels": {"team": "x"},
            "ports": [{"container": 8080, "protocol": "udp"}],
            "healthcheck": {"test": ["CMD-SHELL", "true"], "interval_s": 0.5},
        }
    )
    request = replica_request(spec, 3, "blue", 7)
    assert request.name == f"berth-blue-web-3-{spec.spec_hash[:8]}"  # slot and revision
    assert request.labels == {
        "team": "x",
        "io.berth.deployment": "web",
        "io.berth.replica": "3",
        "io.berth.spec-hash": spec.spec_hash,
        "io.berth.cluster": "blue",
        "io.berth.generation": "7",
    }
    # The Docker gateway turns Berth's request into Docker's arguments and units.
    arguments = docker_arguments(request)
    assert arguments["port_bindings"] == {"8080/udp": ("127.0.0.1", None)}  # loopback
    assert arguments["ports"] == [(8080, "udp")]
    assert arguments["healthcheck"]["interval"] == 500_000_000
    assert arguments["labels"] == request.labels


def test_published_ports_bind_to_the_publish_address() -> None:
    spec = parse_spec({**BASE, "ports": [{"container": 80, "host": 8080}]})
    assert docker_arguments(replica_request(spec, 0, "c", 1))["port_bindings"] == {
        "80/tcp": ("127.0.0.1", 8080)
    }
    everywhere = replica_request(spec, 0, "c", 1, publish_address="0.0.0.0")
    assert docker_arguments(everywhere)["port_bindings"] == {"80/tcp": ("0.0.0.0", 8080)}


def test_default_cluster_keeps_short_names() -> None:
    assert container_name("web", 0) == "berth-web-0"
    assert container_name("web", 0, revision="0123456789abcdef") == "berth-web-0-01234567"
