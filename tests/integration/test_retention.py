"""Retention and clean-up against real Postgres and Docker: old events and build log lines
go by age and by count, Berth's unused networks and exited containers go, and nothing Berth
did not make is touched, with foreign containers, images, volumes and networks present."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest

from controller.app.daemon import Daemon
from tests.integration.conftest import (
    EXAMPLE_IMAGE,
    TEST_LABEL,
    Containers,
    Sql,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def foreign(docker_api: docker.APIClient, cluster: str) -> Iterator[dict[str, str]]:
    """Objects Berth did not make, one of each kind: some with Berth-like names or a label
    of another cluster. Removed afterwards by the test itself."""
    mine = {TEST_LABEL: cluster}
    exited = docker_api.create_container(
        EXAMPLE_IMAGE, ["true"], name=f"berth-{cluster}-lookalike-0", labels=mine
    )["Id"]
    docker_api.start(exited)
    docker_api.wait(exited, timeout=30)
    other_cluster = {**mine, "io.berth.cluster": f"{cluster}-other", "io.berth.network": "x"}
    made = {
        "container": exited,
        "image": f"berth-foreign-{cluster}:1",
        "volume": docker_api.create_volume(f"berth-{cluster}-lookalike-data", labels=mine)["Name"],
        "network": docker_api.create_network(f"berth-{cluster}-net-lookalike", labels=mine)["Id"],
        "other_cluster_network": docker_api.create_network(
            f"berth-{cluster}-other-net-x", labels=other_cluster
        )["Id"],
    }
    docker_api.tag(EXAMPLE_IMAGE, f"berth-foreign-{cluster}", "1")
    yield made
    with contextlib.suppress(docker.errors.APIError):
        docker_api.remove_container(exited, force=True)
    with contextlib.suppress(docker.errors.APIError):
        docker_api.remove_image(made["image"])
    with contextlib.suppress(docker.errors.APIError):
        docker_api.remove_volume(made["volume"])
    for key in ("network", "other_cluster_network"):
        with contextlib.suppress(docker.errors.APIError):
            docker_api.remove_network(made[key])


def built_image(api: docker.APIClient, cluster: str, deployment: str) -> str:
    """An image of its own (a distinct id), as a build of Berth's would be."""
    dockerfile = f"FROM {EXAMPLE_IMAGE}\nLABEL {TEST_LABEL}={cluster} built-for={deployment}\n"
    for _ in api.build(fileobj=io.BytesIO(dockerfile.encode()), rm=True, decode=True,
                       labels={TEST_LABEL: cluster}):  # fmt: skip
        pass
    [image] = api.images(filters={"label": [f"built-for={deployment}", f"{TEST_LABEL}={cluster}"]})
    return str(image["Id"])


def still_there(api: docker.APIClient, made: dict[str, str]) -> None:
    assert api.inspect_container(made["container"])["State"]["Status"] == "exited"
    assert api.inspect_image(made["image"])
    assert api.inspect_volume(made["volume"])
    assert api.inspect_network(made["network"])
    assert api.inspect_network(made["other_cluster_network"])


def add_history(sql: Sql, deployment: str) -> None:
    """30 events (the 5 last written dated 40 days back) and 3 finished builds of 100 log
    lines each (finished 1, 0 and 20 days ago, in that order): the age and the count rules
    each remove something the other keeps."""
    sql(
        "INSERT INTO deployment_events (deployment, kind, level, message, at)"
        " SELECT %s, 'note', 'info', 'event ' || i,"
        " CASE WHEN i > 25 THEN now() - interval '40 days' ELSE now() END"
        " FROM generate_series(1, 30) i",
        [deployment],
    )
    for age_days in (1, 0, 20):
        [build] = sql(
            "INSERT INTO builds (deployment, generation, source, source_key, status, finished_at)"
            " VALUES (%s, 1, '{}', 'k', 'succeeded', now() - make_interval(days => %s))"
            " RETURNING id",
            [deployment, age_days],
        )
        sql(
            "INSERT INTO build_logs (build_id, seq, at, stream, line)"
            " SELECT %s, i, now(), 'stdout', 'line ' || i FROM generate_series(1, 100) i",
            [build["id"]],
        )


def counts(sql: Sql, deployment: str) -> dict[str, Any]:
    [row] = sql(
        "SELECT (SELECT count(*) FROM deployment_events WHERE deployment = %(d)s) AS events,"
        " (SELECT min(message) FILTER (WHERE at < now() - interval '30 days')"
        "  FROM deployment_events WHERE deployment = %(d)s) AS oldest_old,"
        " (SELECT count(*) FROM build_logs l JOIN builds b ON b.id = l.build_id"
        "  WHERE b.deployment = %(d)s) AS lines,"
        " (SELECT count(*) FROM builds WHERE deployment = %(d)s) AS builds",
        {"d": deployment},
    )
    return row


def test_the_janitor_prunes_history_and_berths_leftovers_only(
    start_daemon: Callable[..., Daemon],
    sql: Sql,
    containers: Containers,
    cluster: str,
    foreign: dict[str, str],
) -> None:
    daemon = start_daemon(
        events_max_per_deployment=20,
        events_max_age_s=30 * 86400,
        build_logs_max_builds=2,
        build_logs_max_age_s=14 * 86400,
    )
    add_history(sql, "archive")
    before = counts(sql, "archive")
    assert (before["events"], before["lines"], before["builds"]) == (30, 300, 3)

    # A deployment on a network, then deleted: its network stays until the clean-up.
    sql.insert("web", command=["sleep", "3600"], networks=["backend"])
    wait_for(lambda: sql.converged("web"), what="web converged")
    sql("DELETE FROM deployments WHERE name = 'web'")
    wait_for(lambda: not containers.find("web"), what="web removed")
    network = f"berth-{cluster}-net-backend"
    assert containers.api.networks(names=[network]), "kept until the clean-up"

    # Images Berth built: one for a deployment deleted since (it goes), one for a live one
    # (the dispatcher's retention keeps those).
    built = {}
    for deployment in ("gone", "live"):
        tag = f"berth-build/{cluster}-{deployment}:0123456789ab"
        containers.api.tag(built_image(containers.api, cluster, deployment), tag)
        sql(
            "INSERT INTO builds (deployment, generation, source, source_key, status, image)"
            " VALUES (%s, 1, '{}', 'k', 'succeeded', %s)",
            [deployment, tag],
        )
        built[deployment] = tag
    sql.insert("live", command=["sleep", "3600"], replicas=0)

    swept = wait_for(daemon.janitor.sweep, what="a sweep as the leader")
    after = counts(sql, "archive")
    assert after["events"] == 15, "past the newest 20: 10 went; older than 30 days: 5 went"
    assert after["oldest_old"] is None, "the 40-day-old events went"
    assert after["lines"] == 100, "past the newest 2 builds: 1 went; older than 14 days: 1"
    assert after["builds"] == 3, "the builds rows (their outcome) stay"
    assert swept.networks == (network,)
    assert swept.images == 1
    assert not containers.api.images(name=built["gone"].split(":")[0])
    assert containers.api.inspect_image(built["live"])
    assert not [n for n in containers.api.networks(names=[network]) if n["Name"] == network]
    still_there(containers.api, foreign)

    # An exited container carrying Berth's labels for this cluster, of no deployment: it
    # goes at the next resync; the foreign exited one of the same look stays.
    ghost = containers.api.create_container(
        EXAMPLE_IMAGE,
        ["true"],
        name=f"berth-{cluster}-ghost-0",
        labels={
            "io.berth.deployment": "ghost",
            "io.berth.replica": "0",
            "io.berth.cluster": cluster,
            "io.berth.spec-hash": "0" * 16,
        },
    )["Id"]
    containers.api.start(ghost)
    assert containers.api.wait(ghost, timeout=30)["StatusCode"] == 0, "it ran and exited"
    daemon.controller.request_resync()
    wait_for(lambda: not containers.find("ghost"), what="the ghost container removed")
    assert ghost not in {c["Id"] for c in containers.api.containers(all=True)}
    still_there(containers.api, foreign)
    assert daemon.janitor.sweep() == type(swept)(0, 0, (), 0)
