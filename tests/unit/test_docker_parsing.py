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
