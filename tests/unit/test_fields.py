"""A deployment field is declared once (`controller.model.spec.DeploymentSpec`): every other
list of the fields is derived from it or held to it here, so a field added in one place
only fails this test, naming the places it is missing from."""

from __future__ import annotations

import re
from pathlib import Path

from controller.gateways.postgres_sql import migrations, queries
from controller.model.records import DeploymentRecord
from controller.model.spec import COLUMN_FIELDS, SPEC_FIELDS
from controller.model.workload import WORKLOAD_FIELDS
from tests.fakes import COLUMN_DEFAULTS, FakeClock, FakeStore

ROOT = Path(__file__).resolve().parents[2]
FIELDS = set(SPEC_FIELDS)


def _columns(text: str) -> set[str]:
    return {name.strip().strip('"') for name in text.split(",") if name.strip()}


def _last_definition(function: str) -> str:
    found = ""
    for _, _, sql in migrations():
        for match in re.finditer(
            rf"CREATE (?:OR REPLACE )?FUNCTION {function}\(.*?\$\$(.*?)\$\$", sql, re.S
        ):
            found = match.group(1)
    assert found, f"no {function} in the migrations"
    return found


def test_the_upsert_writes_every_field_and_updates_every_field() -> None:
    sql = queries()["upsert_deployment"]
    listed = re.search(r"INSERT INTO deployments AS d\s*\((.*?)\)\s*VALUES", sql, re.S)
    assert listed is not None
    assert _columns(listed.group(1)) == FIELDS | {"name"}
    updated = set(re.findall(r'"?(\w+)"? = excluded\."?\w+"?', sql))
    assert updated == FIELDS, f"ON CONFLICT misses {FIELDS - updated}"


def test_the_spec_read_selects_every_field() -> None:
    listed = re.search(r"SELECT (.*?)\s+FROM deployments", queries()["select_spec"], re.S)
    assert listed is not None
    missing = FIELDS - _columns(listed.group(1))
    assert not missing, f"select_spec misses {missing}"


def test_the_full_reads_fetch_every_field() -> None:
    """The column fields one by one, the workload fields as `berth_workload_of`."""
    for name in ("select_deployments", "select_deployment"):
        sql = queries()[name]
        selected = set(re.findall(r"\bd\.(\w+)", sql))
        missing = set(COLUMN_FIELDS) - selected
        assert not missing, f"{name} misses {missing}"
        assert "berth_workload_of(d) AS workload" in sql
    body = _last_definition("berth_workload_of")
    built = set(re.findall(r"'(\w+)', ", body))
    assert built == set(WORKLOAD_FIELDS), f"berth_workload_of: {set(WORKLOAD_FIELDS) ^ built}"


def test_the_database_checks_every_field_an_api_client_sends() -> None:
    body = _last_definition("berth_checked_spec")
    known = set(re.findall(r"WHEN '(\w+)' THEN", body))
    assert known == FIELDS | {"name"}, f"berth_checked_spec: {(FIELDS | {'name'}) ^ known}"


def test_every_field_is_a_column_of_deployments() -> None:
    sql = "\n".join(text for _, _, text in migrations())
    table = re.search(r"CREATE TABLE deployments \((.*?)\n\);", sql, re.S)
    assert table is not None
    columns = set(re.findall(r"^\s+\"?(\w+)\"?\s+\w", table.group(1), re.M))
    columns |= set(re.findall(r"ALTER TABLE deployments\s+ADD COLUMN \"?(\w+)\"?", sql))
    columns |= {
        name.strip('"')
        for block in re.findall(r"ALTER TABLE deployments\n(.*?);", sql, re.S)
        for name in re.findall(r"ADD COLUMN (?:IF NOT EXISTS )?(\"?\w+\"?)", block)
    }
    missing = FIELDS - columns
    assert not missing, f"no column for {missing}"


def test_the_documentation_describes_every_field() -> None:
    text = (ROOT / "docs" / "sql-interface.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    described = {name for row in rows for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    missing = FIELDS - described
    assert not missing, f"docs/sql-interface.md does not describe {missing}"


def test_the_records_and_the_fakes_carry_every_field() -> None:
    """What the full read returns becomes the record's spec whole; the fake stores and
    reads back every field, with the database's column defaults."""
    assert set(COLUMN_DEFAULTS) == set(COLUMN_FIELDS), "the fake's defaults"
    row = {
        "name": "web",
        "present": True,
        **dict.fromkeys(COLUMN_FIELDS, "x"),
        "workload": dict.fromkeys(WORKLOAD_FIELDS, "y"),
        **dict.fromkeys(
            (
                "generation",
                "phase",
                "phase_updated_at",
                "observed_generation",
                "ready_replicas",
                "failure_kind",
                "attempts",
                "next_attempt_at",
            )
        ),
    }
    record = DeploymentRecord.from_row(row)
    assert record.spec is not None and set(record.spec) == FIELDS | {"name"}
    store = FakeStore(FakeClock())
    store.apply("web", **{field: {"set": True} for field in SPEC_FIELDS})
    read = store.fetch_one("web")
    assert read is not None and read.spec is not None
    assert set(read.spec) == FIELDS | {"name"}
