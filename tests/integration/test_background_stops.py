"""Stops off the pass, and replicas removed behind Berth's back, on real Docker: replicas
whose process ignores SIGTERM (PID 1 with no handler, as many real images) wait out their
whole stop grace, and neither a rollout nor a delete waits for them (the rollout is
`active` before the old replicas are gone; twenty deletions stop side by side; a leader
killed mid-stop leaves nothing behind); containers removed at every point of a rollout
never fail it."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import docker
import docker.errors
import pytest

from controller.app.daemon import Daemon
from controller.model.names import LABEL_CLUSTER, LABEL_REPLICA
from tests.integration.conftest import EXAMPLE_IMAGE, EXAMPLE_IMAGE_2, Containers, Sql, wait_for
from tests.integration.replicas import ReplicaSet

pytestmark = pytest.mark.integration
STUBBORN: dict[str, Any] = {"command": ["sleep", "3600"], "stop_grace_s": 4}  # PID 1: no SIGTERM


def test_a_rollout_of_replicas_ignoring_sigterm_is_active_before_they_are_gone(
    daemon: Daemon, sql: Sql, containers: Containers
) -> None:
    sql.insert("stubborn", replicas=3, **STUBBORN)
    wait_for(lambda: sql.converged("stubborn"), timeout_s=60, what="converged")
    sql("UPDATE deployments SET image = %s WHERE name = 'stubborn'", [EXAMPLE_IMAGE_2])
    wait_for(
        lambda: (row := sql.converged("stubborn")) and row["observed_generation"] == 2,
        timeout_s=60,
        what="the update active",
    )
    still = [c for c in containers.find() if "busybox:1" in c.get("Image", "")]
    assert still, "old replicas still waiting out their grace: the rollout did not wait"
    wait_for(
        lambda: not [c for c in containers.find() if "busybox:1" in c.get("Image", "")],
        timeout_s=30,
        what="the old replicas gone after their grace",
    )
    events = sql(
        "SELECT id, kind, action, phase_to FROM deployment_events "
        "WHERE deployment = 'stubborn' AND generation = 2 ORDER BY id"
    )
    active = min(e["id"] for e in events if e["phase_to"] == "active")
    removed = [e["id"] for e in events if e["action"] == "remove"]
    assert len(removed) == 3 and max(removed) > active, "each stop ended after it was active"
    assert not [e for e in events if e["phase_to"] == "failed"]


def test_twenty_deletions_stop_side_by_side(
    daemon: Daemon, sql: Sql, containers: Containers
) -> None:
    names = [f"gone-{index}" for index in range(20)]
    for name in names:
        sql.insert(name, **STUBBORN)
    wait_for(lambda: all(sql.converged(n) for n in names), timeout_s=120, what="converged")
    sql("DELETE FROM deployments WHERE name LIKE 'gone-%%'")
    wait_for(lambda: not containers.find(), timeout_s=60, what="every container gone")
    wait_for(
        lambda: not sql("SELECT 1 FROM deployment_status WHERE name LIKE 'gone-%%'"),
        timeout_s=30,
        what="every status row dropped once its container was gone",
    )
    stops = sql(
        "SELECT started_at, finished_at FROM berth_mutations WHERE action = 'remove' "
        "AND deployment LIKE 'gone-%%' AND outcome = 'ok'"
    )
    assert len(stops) == 20
    at_once = max(
        sum(1 for o in stops if o["started_at"] <= s["started_at"] < o["finished_at"])
        for s in stops
    )
    # Each waits out its 4 s grace. Held by their passes, no more could run at once than
    # the daemon runs passes (BERTH_CONCURRENCY, 4 here); off the passes, as many as
    # BERTH_STOP_CONCURRENCY (8), and never more: many exits at once can wedge the engine.
    assert at_once > daemon.settings.concurrency, f"at most {at_once} stops at once"
    assert at_once <= daemon.settings.stop_concurrency, f"{at_once} stops at once"


def test_a_leader_killed_while_replicas_stop_leaves_nothing_running_nor_unresolved(
    replicas: ReplicaSet, sql: Sql, containers: Containers
) -> None:
    first = replicas.start()
    replicas.start()
    replicas.wait_for_leader()
    names = [f"slow-{index}" for index in range(4)]
    for name in names:
        sql.insert(name, command=["sleep", "3600"], stop_grace_s=30)
    wait_for(lambda: all(sql.converged(n) for n in names), timeout_s=90, what="converged")
    leader = replicas.leader()
    assert leader is not None and leader.pid == first.pid
    term = replicas.term()
    sql("DELETE FROM deployments WHERE name LIKE 'slow-%%'")
    wait_for(
        lambda: (
            len(sql("SELECT 1 FROM berth_mutations WHERE action = 'remove' AND outcome IS NULL"))
            == len(names)
        ),
        timeout_s=30,
        what="every stop in flight (their 30 s grace)",
    )
    leader.process.kill()  # SIGKILL mid-stop: the intents stay open, the containers run on
    replicas.wait_for_leader(other_than_term=term, timeout_s=30)
    wait_for(lambda: not containers.find(), timeout_s=90, what="nothing left running")
    wait_for(
        lambda: (
            not sql("SELECT 1 FROM berth_mutations WHERE outcome IS NULL AND resolution IS NULL")
        ),
        timeout_s=30,
        what="every intent resolved",
    )
    wait_for(
        lambda: not sql("SELECT 1 FROM deployment_status WHERE name LIKE 'slow-%%'"),
        timeout_s=30,
        what="the rows dropped",
    )


class Saboteur:
    """Removes this test's containers behind Berth's back at given moments of a rollout,
    read from Docker's own events: a new replica just created (before its start), one just
    started (before it is healthy), and an old one once its replacement is healthy (while
    Berth withdraws and drains it). Each once; the removals are counted."""

    def __init__(self, api: docker.APIClient, cluster: str, new_image: str) -> None:
        self.api, self.cluster, self.new_image = api, cluster, new_image
        self.done: list[str] = []
        self.stream = api.events(
            decode=True, filters={"type": "container", "label": [f"{LABEL_CLUSTER}={cluster}"]}
        )
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _remove(self, container_id: str, moment: str) -> None:
        if moment in self.done:
            return
        with contextlib.suppress(docker.errors.APIError):
            self.api.remove_container(container_id, force=True)
            self.done.append(moment)

    def _follow(self) -> None:
        with contextlib.suppress(Exception):  # the stream closed at the end of the test
            for event in self.stream:
                attributes = (event.get("Actor") or {}).get("Attributes") or {}
                new = attributes.get("image") == self.new_image
                action = str(event.get("Action", ""))
                if new and action == "create":
                    self._remove(event["id"], "between create and start")
                elif new and action == "start" and "between create and start" in self.done:
                    self._remove(event["id"], "while starting")
                elif new and action == "health_status: healthy" and "while starting" in self.done:
                    slot = attributes.get(LABEL_REPLICA)
                    old = self.api.containers(
                        filters={
                            "label": [f"{LABEL_CLUSTER}={self.cluster}", f"{LABEL_REPLICA}={slot}"],
                            "ancestor": EXAMPLE_IMAGE,
                        }
                    )
                    for container in old:
                        self._remove(container["Id"], "while draining")

    def close(self) -> None:
        self.stream.close()


def test_containers_removed_behind_berths_back_mid_rollout_never_fail_it(
    daemon: Daemon, sql: Sql, docker_api: docker.APIClient, cluster: str
) -> None:
    health = {"test": ["CMD", "true"], "interval_s": 0.5, "timeout_s": 2, "retries": 3}
    sql.insert("target", replicas=3, healthcheck=health)
    wait_for(lambda: sql.converged("target"), timeout_s=60, what="converged")
    saboteur = Saboteur(docker_api, cluster, EXAMPLE_IMAGE_2)
    try:
        sql("UPDATE deployments SET image = %s WHERE name = 'target'", [EXAMPLE_IMAGE_2])
        wait_for(
            lambda: (row := sql.converged("target")) and row["observed_generation"] == 2,
            timeout_s=90,
            what="the rollout finished despite the removals",
        )
    finally:
        saboteur.close()
    assert saboteur.done == ["between create and start", "while starting", "while draining"]
    phases = sql("SELECT phase_to FROM deployment_events WHERE deployment = 'target'")
    assert "failed" not in {p["phase_to"] for p in phases}, "the world changed, not the spec"
