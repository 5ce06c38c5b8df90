"""Parsing Docker's container list into what the planner sees (no engine needed)."""

from __future__ import annotations

from controller.gateways.docker_engine import observed_from_summary


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
    observed = observed_from_summary(
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
    observed = observed_from_summary(
        summary({"io.berth.deployment": "web", "io.berth.replica": "x"})
    )
    assert observed.cluster == "default" and observed.replica is None


def test_health_is_read_from_the_status_text() -> None:
    assert observed_from_summary(summary({}, "Up 3 seconds (healthy)")).health == "healthy"
    assert observed_from_summary(summary({}, "Up 3 seconds (unhealthy)")).health == "unhealthy"
    assert observed_from_summary(summary({}, "Up 1 second (health: starting)")).health == "starting"
    assert observed_from_summary(summary({}, "Up 1 second")).health == "none"


def test_unmanaged_container_has_no_deployment() -> None:
    assert observed_from_summary(summary({"other": "x"})).deployment is None


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


def test_docker_times() -> None:
    from controller.gateways.docker_engine import docker_time, state_from_inspect

    assert docker_time("0001-01-01T00:00:00Z") is None
    assert docker_time("2026-11-25T19:00:00.5Z") == 1795633200.5
    assert docker_time("2026-11-25T19:00:00.123456789Z") == 1795633200.123456789
    assert docker_time("2026-11-25T20:00:00+01:00") == 1795633200.0
    state = state_from_inspect(
        {"Status": "exited", "ExitCode": 3, "FinishedAt": "2026-11-25T19:00:00Z"}
    )
    assert (state.status, state.exit_code, state.finished_at) == ("exited", 3, 1795633200.0)
