"""Alert rules: valid for promtool, unit-tested by promtool, and every one documented."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: deploy/setup-host.sh installs Debian's prometheus"
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, cwd=PROMETHEUS, timeout=120, check=False
    )


def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_for_firing_and_for_not_firing_early() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for rule in rules():
        mine = [case for case in cases if case["alertname"] == rule["alert"]]
        assert any(case["exp_alerts"] == [] for case in mine), f"{rule['alert']}: not-early case"
        assert any(case["exp_alerts"] for case in mine), f"{rule['alert']}: firing case"


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_every_alert_has_severity_text_and_a_runbook(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in ("critical", "warning", "info")
    annotations = rule["annotations"]
    for key in ("summary", "description", "runbook_url"):
        assert annotations.get(key), key
    page, _, anchor = annotations["runbook_url"].partition("#")
    runbook = (ROOT / page).read_text()
    headings = {
        re.sub(r"[^a-z0-9-]", "", h.lower().replace(" ", "-"))
        for h in re.findall(r"^## (.+)$", runbook, re.MULTILINE)
    }
    assert anchor in headings, f"no section for #{anchor} in {page}"


def test_alerts_use_only_metrics_berth_exports() -> None:
    from tests.unit.test_dashboard import exported_metric_names, metric_names_in

    exported = exported_metric_names() | {"up"}
    for rule in rules():
        assert metric_names_in(rule["expr"]) <= exported, rule["alert"]
