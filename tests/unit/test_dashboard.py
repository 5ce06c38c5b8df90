"""The Grafana dashboard: well-formed, provisioned, and querying only metrics Berth exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
# The metric families the observability issue asks for; the dashboard must show each, and
# the daemon must export each (tests/integration/test_observability.py).
REQUIRED_FAMILIES = (
    "berth_reconcile_passes_total",
    "berth_reconcile_duration_seconds",
    "berth_reconcile_errors_total",
    "berth_actions_total",
    "berth_deployments",
    "berth_replicas_desired",
    "berth_replicas_ready",
    "berth_drift_detected_total",
    "berth_stuck_deployments",
    "berth_container_restarts_total",
    "berth_replicas_in_backoff",
    "berth_last_full_resync_timestamp_seconds",
    "berth_leader",
    "berth_leader_term",
    "berth_leader_changes_total",
    "berth_docker_request_duration_seconds",
    "berth_docker_errors_total",
    "berth_postgres_query_duration_seconds",
    "berth_postgres_errors_total",
    "berth_build_info",
)
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
}


def exported_metric_names() -> set[str]:
    """Every sample name Berth's registry exposes (with _bucket, _count, _sum, _total...)."""
    import controller.gateways.postgres
    import controller.observability.metrics  # noqa: F401

    families = list(REGISTRY.collect())
    sampled = {sample.name for family in families for sample in family.samples}
    # A gauge whose labels are only known at run time (a host) has no sample before.
    return sampled | {family.name for family in families if family.type == "gauge"}


def metric_names_in(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names (inside {} or by/without (...)), range durations or Grafana variables."""
    stripped = re.sub(r"\{[^}]*\}", " ", expr)
    stripped = re.sub(r"\[[^\]]*\]", " ", stripped)
    stripped = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", stripped)
    stripped = re.sub(r"\$\w+", " ", stripped)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?", stripped):
        token = match.group(0)
        if token.endswith("(") or token.strip() in PROMQL_WORDS:
            continue
        names.add(token.strip())
    return names


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GRAFANA / "dashboards" / "berth.json").read_text())
    return data


def test_metric_name_extraction() -> None:
    rate = 'rate(berth_x_bucket{job="b"}[$__rate_interval])'
    expr = f"histogram_quantile(0.99, sum by (le, call) ({rate}))"
    assert metric_names_in(expr) == {"berth_x_bucket"}
    assert metric_names_in('time() - max(berth_a{j="x"}) > 300 or absent(berth_b)') == {
        "berth_a",
        "berth_b",
    }


def test_dashboard_structure() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 30
    [variable] = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    occupied: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & occupied, f"panel {panel['title']} overlaps another"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == f"${{{variable['name']}}}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"] and target["refId"]
            assert target["datasource"]["uid"] == panel["datasource"]["uid"]


def test_dashboard_queries_only_exported_metrics() -> None:
    exported = exported_metric_names()
    used: set[str] = set()
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            names = metric_names_in(target["expr"])
            assert names, target["expr"]
            assert names <= exported, f"{panel['title']}: {names - exported}"
            used |= names
    for family in REQUIRED_FAMILIES:
        assert any(name == family or name.startswith(f"{family}_") for name in used), family


def test_provisioning_points_at_the_dashboard() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "berth.yaml").read_text())
    assert provider["providers"][0]["type"] == "file"
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    assert datasources["datasources"][0]["type"] == "prometheus"
