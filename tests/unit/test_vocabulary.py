"""One vocabulary: the Phase enum, the name pattern and the metrics agree with the SQL."""

from __future__ import annotations

import re
from pathlib import Path

from controller.gateways.postgres_sql import migrations
from controller.model.names import NAME_PATTERN, NAME_REGEX
from controller.model.phases import MOVING_PHASES, Phase
from controller.model.settings import Settings
from controller.observability.metrics import PHASES


def _last_phase_check() -> set[str]:
    """The values of the newest `deployment_status_phase_known` CHECK in the migrations."""
    found: set[str] | None = None
    pattern = re.compile(
        r"CONSTRAINT deployment_status_phase_known CHECK \(phase IN \((.*?)\)\)", re.S
    )
    for _, _, sql in migrations():
        for match in pattern.finditer(sql):
            found = set(re.findall(r"'(\w+)'", match.group(1)))
    assert found is not None, "no phase CHECK constraint in the migrations"
    return found


def test_sql_phase_check_equals_the_enum() -> None:
    assert _last_phase_check() == {str(phase) for phase in Phase}


def test_metrics_phases_are_the_enum() -> None:
    assert set(PHASES) == {str(phase) for phase in Phase}


def test_settings_accept_exactly_the_moving_phases() -> None:
    assert Settings(stuck_deadline_by_phase_s={str(p): 1.0 for p in MOVING_PHASES})


def test_sql_name_checks_use_the_one_pattern() -> None:
    sql = "\n".join(text for _, _, text in migrations())
    patterns = set(re.findall(r"name !?~ '([^']+)'", sql))
    assert patterns == {NAME_REGEX}


def test_name_pattern_accepts_dns_labels_only() -> None:
    assert NAME_PATTERN.match("web-1")
    assert not NAME_PATTERN.match("Web")
    assert not NAME_PATTERN.match("-web")
    assert not NAME_PATTERN.match("a" * 64)


def test_webhook_events_are_the_phases_and_build_statuses() -> None:
    from controller.model.builds import BuildStatus

    sql = "\n".join(text for _, _, text in migrations())
    body = sql[sql.index("CREATE FUNCTION berth_validate_webhook") :]
    body = body[: body.index("$$;")]
    lists = re.findall(r"IN \((.*?)\)", body, re.S)
    named = {name for part in lists for name in re.findall(r"'([\w.]+)'", part)}
    statuses = {f"build.{status}" for status in BuildStatus if status != BuildStatus.QUEUED}
    assert named == {str(phase) for phase in Phase} | statuses


def test_input_limits_are_the_same_in_python_and_sql() -> None:
    from controller.model import spec

    sql = "\n".join(text for version, _, text in migrations() if version == 11)
    assert f"'{spec.ENV_KEY_REGEX}'" in sql
    for limit in (
        spec.MAX_ENV_VALUE_BYTES,
        spec.MAX_ENV_BYTES,
        spec.MAX_LABEL_KEY_BYTES,
        spec.MAX_LABEL_VALUE_BYTES,
    ):
        assert f"> {limit}" in sql, limit


def _sql() -> str:
    return "\n".join(text for _, _, text in migrations())


def _quoted(text: str) -> set[str]:
    return set(re.findall(r"'([\w ]+)'", text))


def test_mutation_actions_are_one_vocabulary_with_the_sql() -> None:
    from controller.model.records import MutationAction
    from controller.observability.metrics import ACTION_KINDS

    check = re.search(r"berth_mutations_action_known\s+CHECK \(action IN \((.*?)\)\)", _sql(), re.S)
    assert check is not None
    assert _quoted(check.group(1)) == {str(a) for a in MutationAction} == set(ACTION_KINDS)
    queries = (Path(__file__).parents[2] / "controller/sql/queries.sql").read_text()
    assert set(re.findall(r"action = '(\w+)'", queries)) <= {str(a) for a in MutationAction}


def test_resolutions_are_one_vocabulary_with_the_sql() -> None:
    from controller.model.records import Resolution

    check = re.search(r"CHECK \(resolution IN \((.*?)\)\)", _sql(), re.S)
    assert check is not None
    assert _quoted(check.group(1)) == {str(r) for r in Resolution}


def test_settled_phases_end_the_stuck_count_in_sql_and_the_fakes_alike() -> None:
    from controller.model.phases import SETTLED_PHASES

    # the newest berth_write_status (schema 26 on), where the status row is written
    resets = re.findall(r"stuck_resumes = CASE WHEN wanted\.phase IN \((.*?)\) THEN 0", _sql())
    assert resets
    assert _quoted(resets[-1]) == {str(p) for p in SETTLED_PHASES}


def test_the_views_converged_is_the_one_rule() -> None:
    """`deployment_overview.converged` (the newest definition) is `converged()`: active
    at the current generation; tests/integration/test_schema.py runs both on the same rows."""
    views = re.findall(r"(coalesce\(.*?\) AS converged)", _sql())
    assert views, "no converged column in the migrations"
    assert views[-1] == (
        f"coalesce(d.generation = s.observed_generation AND s.phase = '{Phase.ACTIVE}', false) "
        "AS converged"
    )


def test_restart_reasons_are_the_metric_labels() -> None:
    from controller.model.replicas import RestartReason
    from controller.observability.metrics import RESTART_REASONS

    assert set(RESTART_REASONS) == {str(r) for r in RestartReason}
