"""Parsing Docker's container list into what the planner sees (no engine needed)."""

from __future__ import annotations

from controller.gateways.docker_replicas import replica_from_summary


def summary(
    labels: dict[str, str], status: str = "Up 2 seconds", state: str = "running"
) -> dict[str, object]:
    return {
        "Id": "abc",
        "Names": ["/berth-web-0"],
        "Labels": labels,
        "State": state,
        "Status": status,
        "Created": 1700000000,
    }


def test_labels_become_fields() -> None:
    observed = replica_from_summary(
        summary(
            {
                "io.berth.deployment": "web",
                "io.berth.replica": "2",
                "io.berth.spec-hash": "h",
                "io.berth.cluster": "blue",
            }
        )
    )
    assert (
        observed.name,
        observed.deployment,
        observed.replica,
        observed.spec_hash,
        observed.cluster,
    ) == ("berth-web-0", "web", 2, "h", "blue")


def test_missing_cluster_label_means_default_and_bad_replica_means_none() -> None:
    observed = replica_from_summary(
        summary({"io.berth.deployment": "web", "io.berth.replica": "x"})
    )
    assert observed.cluster == "default" and observed.replica is None


def test_health_is_read_from_the_status_text() -> None:
    assert replica_from_summary(summary({}, "Up 3 seconds (healthy)")).health == "healthy"
    assert replica_from_summary(summary({}, "Up 3 seconds (unhealthy)")).health == "unhealthy"
    assert replica_from_summary(summary({}, "Up 1 second (health: starting)")).health == "starting"
    assert replica_from_summary(summary({}, "Up 1 second")).health == "none"


def test_unmanaged_container_has_no_deployment() -> None:
    assert replica_from_summary(summary({"other": "x"})).deployment is None


def test_engine_failures_are_transient_and_spec_failures_permanent() -> None:
    from controller.gateways.docker_engine import spec_caused

    engine_side = (
        "failed to update store for object type *libnetwork.endpoint: open : "
        "no such file or directory"
    )
    assert not spec_caused(engine_side), "the engine's own store: retried"
    assert not spec_caused("driver failed programming external connectivity: permission denied")
    assert spec_caused(
        "OCI runtime create failed: runc create failed: unable to start container process: "
        'exec: "nope": executable file not found in $PATH: unknown'
    )
    assert spec_caused(
        "OCI runtime create failed: starting container process caused: "
        'exec: "/app/run": stat /app/run: no such file or directory: unknown'
    )


def test_an_update_out_of_sequence_is_retried_with_the_new_version() -> None:
    """Swarm refuses an update made at an old version; the swarm runtime reads the service
    again on each retry (`retry_transient` around the read and the update)."""
    import docker.errors
    import requests

    from controller.gateways.docker_engine import translated
    from controller.model.errors import TransientError

    answer = requests.Response()
    answer.status_code = 500
    refused = docker.errors.APIError(
        "500", answer, explanation="rpc error: code = Unknown desc = update out of sequence"
    )
    try:
        with translated("update", "s1"):
            raise refused
    except TransientError as error:
        assert "update out of sequence" in str(error)
    else:
        raise AssertionError("not translated")


def test_docker_times() -> None:
    from controller.gateways.docker_engine import docker_time
    from controller.gateways.docker_replicas import inspection_from_state

    assert docker_time("0001-01-01T00:00:00Z") is None
    assert docker_time("2026-11-25T19:00:00.5Z") == 1795633200.5
    assert docker_time("2026-11-25T19:00:00.123456789Z") == 1795633200.123456789
    assert docker_time("2026-11-25T20:00:00+01:00") == 1795633200.0
    state = inspection_from_state(
        {"Status": "exited", "ExitCode": 3, "FinishedAt": "2026-11-25T19:00:00Z"}
    )
    assert (state.status, state.exit_code, state.finished_at) == ("exited", 3, 1795633200.0)


def test_published_ports_become_addresses_the_proxy_reaches() -> None:
    entry = summary({"io.berth.deployment": "web"})
    entry["Ports"] = [
        {"PrivatePort": 8080, "PublicPort": 32768, "IP": "0.0.0.0", "Type": "tcp"},
        {"PrivatePort": 8080, "PublicPort": 32768, "IP": "::", "Type": "tcp"},  # IPv6 twin
        {"PrivatePort": 9090, "PublicPort": 32769, "IP": "10.1.2.3", "Type": "tcp"},
        {"PrivatePort": 53, "PublicPort": 5353, "IP": "0.0.0.0", "Type": "udp"},
        {"PrivatePort": 7070, "Type": "tcp"},  # exposed, not published
    ]
    observed = replica_from_summary(entry)
    assert observed.address(8080) == ("127.0.0.1", 32768)
    assert observed.address(9090) == ("10.1.2.3", 32769)
    assert observed.address(53) is None and observed.address(7070) is None
    assert len(observed.endpoints) == 2


def test_every_docker_state_is_a_run_state_and_others_are_unknown() -> None:
    from controller.model.replicas import RunState

    docker_states = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
    for state in docker_states:
        assert replica_from_summary(summary({}, state=state)).state == RunState(state)
    assert replica_from_summary(summary({}, state="frozen")).state == RunState.UNKNOWN
    assert {str(s) for s in RunState} == {*docker_states, "unknown"}
