"""The `Runtime` port, one contract for the fake, the docker runtime and the swarm runtime
(on the three-node rig, with the differences it declares in its backend): placing is
idempotent by name and refuses another identity, starting and retiring are "ensure"s,
states and exit codes read back in the one vocabulary, and a vanished replica answers as
the engine does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from controller.model.errors import DockerConflict, ImageUnavailable, ReplicaVanished
from controller.model.provenance import proves
from controller.model.replicas import ObservedReplica, ReplicaRequest, RunState
from controller.model.requests import replica_request
from controller.model.spec import parse_spec
from tests.integration.conftest import wait_for
from tests.integration.contract.conftest import RuntimeBackend

IMAGE = "berth-example/busybox:1"
PROOF_KEY = b"the contract's proof key"


def request(
    backend: RuntimeBackend, deployment: str = "web", replica: int = 0, **spec: Any
) -> ReplicaRequest:
    parsed = parse_spec({"name": deployment, "image": IMAGE, **spec})
    return replica_request(parsed, replica, backend.cluster, 1, proof_key=PROOF_KEY)


def mine(backend: RuntimeBackend, deployment: str | None = None) -> list[ObservedReplica]:
    return [r for r in backend.runtime.observe(deployment) if r.cluster == backend.cluster]


def state_of(backend: RuntimeBackend, replica_id: str) -> Callable[[], RunState | None]:
    def read() -> RunState | None:
        found = [r for r in mine(backend) if r.id == replica_id]
        return found[0].state if found else None

    return read


def test_a_placed_replica_is_observed_with_its_identity(runtime_backend: RuntimeBackend) -> None:
    wanted = request(runtime_backend, replica=1)
    replica_id = runtime_backend.runtime.place(wanted)
    [seen] = mine(runtime_backend, "web")
    assert seen.id == replica_id and seen.name == wanted.name
    assert (seen.deployment, seen.replica, seen.cluster) == ("web", 1, runtime_backend.cluster)
    assert seen.spec_hash == wanted.labels["io.berth.spec-hash"]
    assert proves(PROOF_KEY, seen), "the creation proof reads back and holds"
    assert runtime_backend.runtime.accepting(), "a running engine takes new connections"
    assert seen.state == runtime_backend.placed and not seen.ready
    assert runtime_backend.runtime.place(wanted) == replica_id, "a repeat finds the first"
    assert len(mine(runtime_backend, "web")) == 1


def test_a_name_held_by_another_identity_is_a_conflict(runtime_backend: RuntimeBackend) -> None:
    wanted = request(runtime_backend)
    runtime_backend.runtime.place(wanted)
    other = ReplicaRequest(
        name=wanted.name,
        image=IMAGE,
        command=None,
        labels={**wanted.labels, "io.berth.replica": "7"},
    )
    with pytest.raises(DockerConflict):
        runtime_backend.runtime.place(other)


def test_start_and_retire_are_ensures(runtime_backend: RuntimeBackend) -> None:
    runtime = runtime_backend.runtime
    replica_id = runtime.place(request(runtime_backend))
    runtime.start(replica_id)
    wait_for(lambda: state_of(runtime_backend, replica_id)() == RunState.RUNNING, 30)
    runtime.start(replica_id, RunState.RUNNING)  # already running: done
    [seen] = mine(runtime_backend, "web")
    assert seen.ready
    assert runtime.inspect(replica_id).status == "running"
    runtime.retire(replica_id, 1)
    assert mine(runtime_backend, "web") == []
    runtime.retire(replica_id, 1)  # already gone: done


def test_a_vanished_replica_cannot_be_started_or_inspected(
    runtime_backend: RuntimeBackend,
) -> None:
    runtime = runtime_backend.runtime
    replica_id = runtime.place(request(runtime_backend))
    runtime.retire(replica_id, 0)
    with pytest.raises(ReplicaVanished):  # the world changed: no failure of the spec
        runtime.start(replica_id)
    with pytest.raises(ReplicaVanished):
        runtime.inspect(replica_id)


def test_an_exited_replica_reads_back_with_its_exit_code(runtime_backend: RuntimeBackend) -> None:
    command = runtime_backend.exiting_command("crash", 3)
    spec = {"command": list(command)} if command else {}
    runtime = runtime_backend.runtime
    replica_id = runtime.place(request(runtime_backend, "crash", 0, **spec))
    runtime.start(replica_id)
    inspection = wait_for(lambda: (seen := runtime.inspect(replica_id)).exit_code == 3 and seen, 30)
    assert state_of(runtime_backend, replica_id)() == runtime_backend.ended
    assert inspection.status == runtime_backend.ended_status
    assert inspection.finished_at is not None
    assert isinstance(runtime.output_tail(replica_id, 5), str)


def test_observing_one_deployment_sees_only_its_replicas(runtime_backend: RuntimeBackend) -> None:
    runtime = runtime_backend.runtime
    runtime.place(request(runtime_backend, "web"))
    runtime.place(request(runtime_backend, "api"))
    assert {r.deployment for r in mine(runtime_backend, "api")} == {"api"}
    assert {r.deployment for r in mine(runtime_backend)} == {"web", "api"}


def test_an_image_present_is_ready_and_one_missing_is_refused(
    runtime_backend: RuntimeBackend,
) -> None:
    if not runtime_backend.checks_images:  # each node finds (or lacks) it when it runs a task
        assert runtime_backend.runtime.prepare_image("berth-example/never-built:0")
        return
    assert runtime_backend.runtime.prepare_image(IMAGE) == "present"
    with pytest.raises(ImageUnavailable):
        runtime_backend.runtime.prepare_image("berth-example/never-built:0")


def test_what_a_pass_changed_reads_back_as_a_list_shows_it(
    runtime_backend: RuntimeBackend,
) -> None:
    """`observe_after`, the read-back after a pass acted, answers what `observe` would:
    the changed replicas as listed (the docker runtime reads them one by one), one retired
    left out, and with an untouched one beside them, the untouched one too."""
    runtime = runtime_backend.runtime

    def identities(replicas: list[ObservedReplica]) -> set[tuple[Any, ...]]:
        return {
            (r.id, r.name, r.replica, r.spec_hash, r.proof, r.state)
            for r in replicas
            if r.cluster == runtime_backend.cluster
        }

    running = runtime.place(request(runtime_backend, "web", 0))
    runtime.start(running)
    wait_for(lambda: state_of(runtime_backend, running)() == RunState.RUNNING, 30)
    placed = runtime.place(request(runtime_backend, "web", 1))
    listed = mine(runtime_backend, "web")
    assert len(listed) == 2
    changed = {running, placed}
    assert identities(runtime.observe_after("web", [], changed)) == identities(listed)
    assert identities(runtime.observe_after("web", listed, changed)) == identities(listed)
    runtime.retire(placed, 0)
    after = runtime.observe_after("web", listed, changed)
    assert identities(after) == identities(mine(runtime_backend, "web"))
    assert {r.id for r in after if r.cluster == runtime_backend.cluster} == {running}
    other = runtime.place(request(runtime_backend, "web", 2))  # untouched by "the pass"
    after = runtime.observe_after("web", listed, {running})
    assert {r.id for r in after if r.cluster == runtime_backend.cluster} == {running, other}
