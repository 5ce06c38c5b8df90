"""The workload fields and the deny-by-default policy, as the database enforces them: every
refusal names its field; what only an administrator may allow is accepted once `policy`
says so, and a permission in use cannot be taken away."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from controller.model.errors import InvalidSpec
from controller.model.spec import parse_spec
from controller.model.workload import bind_permission, clean_absolute_path, memory_bytes
from tests.integration.conftest import Sql

pytestmark = pytest.mark.integration

REFUSED = [
    ({"resources": {"memory": "lots"}}, "deployments.resources.memory: must be bytes"),
    ({"resources": {"memory": 1024}}, "deployments.resources.memory: must be bytes"),
    ({"resources": {"cpus": 0}}, "deployments.resources.cpus: must be a number of CPUs"),
    ({"resources": {"pids": 0}}, "deployments.resources.pids: must be an integer"),
    ({"resources": {"swap": 1}}, "deployments.resources.swap: is not a known field"),
    ({"volumes": [{"target": "/data"}]}, "deployments.volumes[0]: set exactly one of"),
    ({"volumes": [{"name": "Data", "target": "/d"}]}, "deployments.volumes[0].name"),
    ({"volumes": [{"name": "d", "target": "/"}]}, "deployments.volumes[0].target"),
    ({"volumes": [{"name": "d", "target": "data"}]}, "deployments.volumes[0].target"),
    (
        {"volumes": [{"source": "/srv/../etc", "target": "/x"}]},
        "deployments.volumes[0].source: must be an absolute host path without",
    ),
    ({"volumes": [{"source": "srv", "target": "/x"}]}, "deployments.volumes[0].source"),
    (
        {"volumes": [{"source": "/srv", "target": "/x", "driver": "nfs"}]},
        "deployments.volumes[0].driver: applies to named volumes only",
    ),
    (
        {"volumes": [{"name": "d", "target": "/x", "driver": "Bad Driver"}]},
        "deployments.volumes[0].driver: must name a volume driver",
    ),
    (
        {"volumes": [{"source": "/", "target": "/host"}]},
        "deployments.volumes[0].source: / would give the container the host (its whole file "
        'system): refused unless an administrator allows "host_root"',
    ),
    (
        {"volumes": [{"source": "/var/run/docker.sock", "target": "/var/run/docker.sock"}]},
        "deployments.volumes[0].source: /var/run/docker.sock would give the container the "
        'host (its Docker engine): refused unless an administrator allows "docker_socket"',
    ),
    (
        {"volumes": [{"source": "/run", "target": "/host-run"}]},
        "deployments.volumes[0].source: /run would give the container the host (its Docker engine)",
    ),
    (
        {"volumes": [{"name": "a", "target": "/d"}, {"name": "b", "target": "/d"}]},
        "deployments.volumes[1].target: /d is mounted twice",
    ),
    (
        {"volumes": [{"source": "/srv", "target": "/s", "retain": True}]},
        "deployments.volumes[0].retain: applies to named volumes only",
    ),
    ({"networks": ["Back End"]}, "deployments.networks[0]: must be a lowercase DNS label"),
    ({"networks": ["a", "a"]}, 'deployments.networks[1]: "a" is listed twice'),
    ({"stop_signal": "KILL EVERYTHING"}, "deployments.stop_signal: must be a signal"),
    ({"stop_grace_s": -1}, "deployments.stop_grace_s: must be a number of seconds"),
    ({"user": "root; rm -rf /"}, "deployments.user: must be"),
    ({"cap_add": ["cap_net_admin"]}, "deployments.cap_add[0]: must be a capability name"),
    (
        {"cap_add": ["SYS_ADMIN"]},
        "deployments.cap_add[0]: SYS_ADMIN is outside the safe set (Docker's defaults): "
        'refused unless an administrator allows "cap:SYS_ADMIN"',
    ),
    ({"privileged": True}, "deployments.privileged: a privileged container owns the host"),
    ({"network_mode": "host"}, "deployments.network_mode: the host's network is refused"),
    ({"network_mode": "container:x"}, "deployments.network_mode: must be null"),
    (
        {"network_mode": "none", "ports": [{"container": 80}]},
        "deployments.ports: cannot be published with network_mode 'none'",
    ),
    ({"pid_mode": "host"}, "deployments.pid_mode: the host's PID namespace is refused"),
    ({"ipc_mode": "host"}, "deployments.ipc_mode: the host's IPC namespace is refused"),
    ({"devices": ["/dev/sda"]}, "deployments.devices[0]: host devices are refused"),
    ({"devices": ["/etc/passwd"]}, "deployments.devices[0]: must be a path under /dev"),
    ({"placement": []}, "deployments.placement: must be a JSON object"),
    ({"placement": {"nodes": 3}}, "deployments.placement.nodes: unknown field"),
    (
        {"placement": {"constraints": ["zone==a"]}},
        "deployments.placement.constraints[0]: must be",
    ),
    (
        {"placement": {"constraints": ["node.labels.zone==a", "node.role=manager"]}},
        "deployments.placement.constraints[1]: must be",
    ),
    ({"placement": {"constraints": "node.role==manager"}}, "deployments.placement.constraints:"),
    ({"placement": {"spread": "a zone"}}, "deployments.placement.spread: must be the name"),
    ({"placement": {"max_per_node": 0}}, "deployments.placement.max_per_node: must be an integer"),
    ({"placement": {"max_per_node": 1.5}}, "deployments.placement.max_per_node: must be"),
]


@pytest.mark.parametrize(("columns", "message"), REFUSED)
def test_workload_fields_are_checked_naming_the_field(
    sql: Sql, columns: dict[str, Any], message: str
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        sql.insert("web", **columns)
    assert str(refused.value).startswith(message), str(refused.value)
    assert sql("SELECT count(*) AS n FROM deployments")[0]["n"] == 0


@pytest.mark.parametrize(("columns", "message"), REFUSED)
def test_the_spec_model_refuses_what_the_database_refuses(
    columns: dict[str, Any], message: str
) -> None:
    """Client side (`berth apply`) the same shapes are refused; what only policy allows
    is the database's alone (the client cannot read policy)."""
    policy_only = (
        "would give the container",
        "is refused",
        "are refused",
        "owns the host",
        "outside the safe set",
    )
    if any(marker in message for marker in policy_only):
        parse_spec({"name": "web", "image": "x", **columns})
        return
    with pytest.raises(InvalidSpec):
        parse_spec({"name": "web", "image": "x", **columns})


@pytest.mark.parametrize(
    "value", ["/", "/srv", "/srv/x", "/srv/../x", "/srv/./x", "//srv", "/srv/", "srv", "/a..b"]
)
def test_paths_are_judged_alike_by_python_and_sql(sql: Sql, value: str) -> None:
    [row] = sql(
        "SELECT berth_clean_absolute_path(%s) AS clean, berth_bind_permission(%s) AS needs",
        [value, value],
    )
    assert row["clean"] == clean_absolute_path(value)
    assert row["needs"] == bind_permission(value)


@pytest.mark.parametrize("value", [1_000_000, "512Mi", "1Gi", "256M", "64k", "12", "1.5Gi", "x"])
def test_memory_quantities_are_read_alike_by_python_and_sql(sql: Sql, value: Any) -> None:
    [row] = sql("SELECT berth_memory_bytes(%s::jsonb) AS bytes", [psycopg.types.json.Jsonb(value)])
    assert row["bytes"] == memory_bytes(value)


def test_an_administrator_allows_a_dangerous_option_for_one_deployment(sql: Sql) -> None:
    sql(
        "INSERT INTO policy (deployment, allow, reason) VALUES ('agent', %s, 'node agent')",
        [["privileged", "docker_socket", "cap:NET_ADMIN"]],
    )
    sql.insert(
        "agent",
        privileged=True,
        cap_add=["NET_ADMIN"],
        volumes=[{"source": "/var/run/docker.sock", "target": "/var/run/docker.sock"}],
    )
    with pytest.raises(psycopg.errors.CheckViolation, match=r"deployments\.privileged"):
        sql.insert("other", privileged=True)  # the policy is per deployment
    with pytest.raises(psycopg.errors.CheckViolation) as in_use:
        sql("UPDATE policy SET allow = '{docker_socket,cap:NET_ADMIN}' WHERE deployment = 'agent'")
    assert 'policy.allow: deployment agent still uses "privileged"' in str(in_use.value)
    with pytest.raises(psycopg.errors.CheckViolation, match="still uses"):
        sql("DELETE FROM policy WHERE deployment = 'agent'")
    sql(
        "UPDATE deployments SET privileged = false, cap_add = '[]', volumes = '[]'"
        " WHERE name = 'agent'"
    )
    sql("DELETE FROM policy WHERE deployment = 'agent'")
    with pytest.raises(psycopg.errors.CheckViolation, match="policy_allow_known"):
        sql("INSERT INTO policy (deployment, allow) VALUES ('x', '{everything}')")


def test_upgrading_keeps_every_existing_row_valid_and_its_generation(sql: Sql) -> None:
    sql.insert("web", env={"A": "b"}, ports=[{"container": 80}])
    [before] = sql("SELECT generation, resources, volumes, privileged FROM deployments")
    assert before == {"generation": 1, "resources": {}, "volumes": [], "privileged": False}
    sql("UPDATE deployments SET replicas = 1 WHERE name = 'web'")
    assert sql("SELECT generation FROM deployments")[0]["generation"] == 1
