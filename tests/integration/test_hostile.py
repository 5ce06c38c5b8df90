"""Hostile specs against a running daemon, real Postgres and Docker: each is refused by the
database naming its field, or accepted and either runs with its value intact or fails with
a clear message, while five good deployments stay converged and the daemon stays leader.
The README's table ("Hostile specs") lists these same cases; a test keeps them equal."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest

from controller.app.daemon import Daemon
from tests.integration.conftest import Containers, Sql, report, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
README = Path(__file__).resolve().parents[2] / "README.md"
SLEEP = ["sleep", "3600"]
SQL_TEXT = "'); DROP TABLE deployments; --"
UNICODE_TEXT = "héllo wörld 🚀 ü"


@dataclass(frozen=True)
class Hostile:
    what: str  # as in the README's table
    columns: dict[str, Any]
    refused: str | None = None  # the start of the database's message
    fails_with: str | None = None  # accepted: the start of the failed status's message
    runs_with_env: dict[str, str] = field(default_factory=dict)  # accepted: runs, env intact


CASES = [
    Hostile("privileged mode", {"privileged": True}, "deployments.privileged:"),
    Hostile(
        "the Docker socket as a bind mount",
        {"volumes": [{"source": "/var/run/docker.sock", "target": "/s"}]},
        "deployments.volumes[0].source: /var/run/docker.sock would give",
    ),
    Hostile(
        "/run (holding the socket) as a bind mount",
        {"volumes": [{"source": "/run", "target": "/r"}]},
        "deployments.volumes[0].source: /run would give",
    ),
    Hostile(
        "/ as a bind mount",
        {"volumes": [{"source": "/", "target": "/host"}]},
        "deployments.volumes[0].source: / would give",
    ),
    Hostile(
        "a `..` bind path",
        {"volumes": [{"source": "/srv/../etc", "target": "/e"}]},
        "deployments.volumes[0].source: must be an absolute host path",
    ),
    Hostile(
        "a relative bind path",
        {"volumes": [{"source": "etc", "target": "/e"}]},
        "deployments.volumes[0].source: must be an absolute host path",
    ),
    Hostile(
        "a `..` mount target",
        {"volumes": [{"name": "d", "target": "/data/../etc"}]},
        "deployments.volumes[0].target:",
    ),
    Hostile(
        "a bind outside BERTH_ALLOWED_BIND_PATHS",
        {"volumes": [{"source": "/etc", "target": "/host-etc"}]},
        fails_with="volumes[0].source: /etc is not under BERTH_ALLOWED_BIND_PATHS",
    ),
    Hostile("the host's network", {"network_mode": "host"}, "deployments.network_mode:"),
    Hostile(
        "another container's network",
        {"network_mode": "container:db"},
        "deployments.network_mode: must be null",
    ),
    Hostile("the host's PID namespace", {"pid_mode": "host"}, "deployments.pid_mode:"),
    Hostile("the host's IPC namespace", {"ipc_mode": "host"}, "deployments.ipc_mode:"),
    Hostile("a host device", {"devices": ["/dev/sda"]}, "deployments.devices[0]:"),
    Hostile(
        "capability SYS_ADMIN",
        {"cap_add": ["SYS_ADMIN"]},
        "deployments.cap_add[0]: SYS_ADMIN is outside the safe set",
    ),
    Hostile(
        "capability ALL",
        {"cap_add": ["ALL"]},
        "deployments.cap_add[0]: ALL is outside the safe set",
    ),
    Hostile(
        "a 1 MB env value",
        {"env": {"BIG": "x" * 1_000_000}},
        "deployments.env.BIG: is 1000000 bytes",
    ),
    Hostile(
        "150 KB of env in all",
        {"env": {f"V{i}": "x" * 30_000 for i in range(5)}},
        "deployments.env: is 150",
    ),
    Hostile(
        "a 100 KB label value",
        {"labels": {"note": "x" * 100_000}},
        "deployments.labels.note: is 100000 bytes",
    ),
    Hostile("an env key with `=`", {"env": {"A=B": "c"}}, "deployments.env.A=B: keys must be"),
    Hostile("a unicode env key", {"env": {"ÄPFEL": "1"}}, "deployments.env.ÄPFEL: keys must be"),
    Hostile("a unicode name", {"name": "wéb"}, "deployments.name: must be a lowercase DNS"),
    Hostile(
        "SQL metacharacters in a name",
        {"name": "x'; DROP TABLE deployments; --"},
        "deployments.name: must be a lowercase DNS",
    ),
    Hostile(
        "SQL metacharacters in an env value",
        {"env": {"NOTE": SQL_TEXT}},
        runs_with_env={"NOTE": SQL_TEXT},
    ),
    Hostile(
        "unicode in an env value",
        {"env": {"GREETING": UNICODE_TEXT}},
        runs_with_env={"GREETING": UNICODE_TEXT},
    ),
    Hostile(
        "label spoofing: io.berth.deployment",
        {"labels": {"io.berth.deployment": "web"}},
        "deployments.labels.io.berth.deployment: the prefix",
    ),
    Hostile(
        "label spoofing: io.berth.cluster",
        {"labels": {"io.berth.cluster": "other"}},
        "deployments.labels.io.berth.cluster: the prefix",
    ),
    Hostile("shell in the image name", {"image": "busybox; rm -rf /"}, "deployments.image:"),
    Hostile(
        "an image that is not there",
        {"image": "nope/nothing:1"},
        fails_with="image 'nope/nothing:1' is not present locally and could not be pulled",
    ),
    Hostile(
        "a command not in the image",
        {"command": ["/no/such/binary"]},
        fails_with='unable to start container process: exec: "/no/such/binary"',
    ),
    Hostile("1001 replicas", {"replicas": 1001}, "deployments.replicas: must be between 0"),
    Hostile("negative replicas", {"replicas": -1}, "deployments.replicas: must be between 0"),
    Hostile(
        "port 70000",
        {"ports": [{"container": 70000}]},
        "deployments.ports[0].container: must be an integer from 1 to 65535",
    ),
    Hostile(
        "a host port another deployment holds",
        {"ports": [{"container": 80, "host": 38917}]},
        "deployments.ports[0].host: host port 38917/tcp is published by deployment good-1",
    ),
    Hostile("6 bytes of memory", {"resources": {"memory": 6}}, "deployments.resources.memory:"),
    Hostile(
        "an absurd memory quantity",
        {"resources": {"memory": "99999999999999Ti"}},
        "deployments.resources.memory:",
    ),
    Hostile("0 processes", {"resources": {"pids": 0}}, "deployments.resources.pids:"),
    Hostile("shell in the user", {"user": "root; rm -rf /"}, "deployments.user:"),
    Hostile(
        "shell in the stop signal", {"stop_signal": "SIGKILL; reboot"}, "deployments.stop_signal:"
    ),
    Hostile(
        "a route host with a path",
        {"routes": [{"host": "evil.test/../x", "port": 80}]},
        "deployments.routes[0].host:",
    ),
    Hostile(
        "a healthcheck that is not CMD",
        {"healthcheck": {"test": ["sh", "-c", "true"]}},
        "deployments.healthcheck.test:",
    ),
    Hostile(
        "a reference to a secret that does not exist",
        {"env": {"K": {"secret": "nope"}}},
        "deployments.env.K: secret 'nope' does not exist",
    ),
]


def insert(sql: Sql, case: Hostile, name: str) -> None:
    columns = {"command": SLEEP, **case.columns}
    sql.insert(columns.pop("name", name), **columns)


def failed(sql: Sql, name: str) -> dict[str, Any] | None:
    status = sql.status(name)
    return status if status and status["phase"] == "failed" else None


def test_hostile_specs_are_refused_or_fail_clearly_and_harm_nothing(
    start_daemon: Callable[..., Daemon],
    sql: Sql,
    containers: Containers,
    capsys: pytest.CaptureFixture[str],
) -> None:
    daemon = start_daemon()
    good = [f"good-{i}" for i in range(1, 6)]
    for name in good:
        ports = [{"container": 80, "host": 38917}] if name == "good-1" else []
        sql.insert(name, command=SLEEP, ports=ports)
    for name in good:
        wait_for(partial(sql.converged, name), what=f"{name} converged")
    before = {c["Id"] for name in good for c in containers.running(name)}

    accepted: list[tuple[str, Hostile]] = []
    for number, case in enumerate(CASES, 1):
        name = f"hostile-{number}"
        if case.refused is not None:
            with pytest.raises(psycopg.errors.CheckViolation) as refused:
                insert(sql, case, name)
            assert str(refused.value).startswith(case.refused), (case.what, str(refused.value))
        else:
            insert(sql, case, name)
            accepted.append((name, case))
    # A NUL escape is refused by Postgres' own JSON parser, which names no field.
    with pytest.raises(psycopg.errors.UntranslatableCharacter):
        sql("INSERT INTO deployments (name, image, env) VALUES"
            " ('nul', 'x', '{\"A\": \"a\\u0000b\"}'::jsonb)")  # fmt: skip

    for name, case in accepted:
        if case.fails_with is not None:
            status = wait_for(
                partial(failed, sql, name),
                what=f"{case.what} failed",
            )
            assert case.fails_with in status["message"], (case.what, status["message"])
            report(capsys, f"{case.what}: failed: {status['message'][:160]}")
        else:
            wait_for(partial(sql.converged, name), what=f"{case.what} running")
            [running] = containers.running(name)
            env = containers.api.inspect_container(running["Id"])["Config"]["Env"]
            for key, value in case.runs_with_env.items():
                assert f"{key}={value}" in env, (case.what, env)

    assert daemon.leadership.is_leader, "the daemon is alive and still leads"
    assert sql("SELECT count(*) AS n FROM deployments WHERE name LIKE 'good-%'")[0]["n"] == 5
    for name in good:
        assert sql.converged(name), f"{name} stayed converged"
    after = {c["Id"] for name in good for c in containers.running(name)}
    assert after == before, "no good container was replaced"


def test_the_readme_lists_every_hostile_case() -> None:
    text = README.read_text()
    section = text[text.index("## Hostile specs") :]
    table = section[: section.index("\n## ", 1)]
    rows = [line for line in table.splitlines() if line.startswith("| ")][1:]
    listed = [re.sub(r"^\| *|\s*\|.*$", "", row) for row in rows if not row.startswith("| ---")]
    assert len(CASES) >= 30
    assert [case.what for case in CASES] + ["a NUL escape in a JSON value"] == listed
