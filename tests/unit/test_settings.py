"""Settings: documented, validated, and docs/configuration.md generated from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.model.phases import Phase
from controller.model.settings import BUILD_STUCK_MARGIN_S, Settings, settings_reference


def test_every_field_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description and len(field.description) > 20, name


def test_docs_configuration_matches_the_code() -> None:
    docs = Path(__file__).parents[2] / "docs" / "configuration.md"
    regenerate = "python -m controller.model.settings > docs/configuration.md"
    assert docs.read_text() == settings_reference(), f"out of date: run {regenerate}"


def test_environment_prefix_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_CONCURRENCY", "3")
    monkeypatch.setenv("BERTH_HTTP_ADDR", "0.0.0.0:9999")
    settings = Settings()
    assert settings.concurrency == 3
    assert (settings.http_host, settings.http_port) == ("0.0.0.0", 9999)
    monkeypatch.setenv("BERTH_HTTP_ADDR", "nonsense")
    with pytest.raises(ValidationError, match="http_addr"):
        Settings()


def test_stuck_deadlines_per_phase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BERTH_STUCK_DEADLINE_BY_PHASE_S", '{"pulling_image": 1800}')
    settings = Settings()
    assert settings.stuck_deadline_s_for(Phase.PULLING_IMAGE) == 1800
    assert settings.stuck_deadline_s_for(Phase.CREATING) == settings.stuck_deadline_s == 600
    monkeypatch.setenv("BERTH_STUCK_DEADLINE_BY_PHASE_S", '{"active": 5}')
    with pytest.raises(ValidationError, match="not moving phases"):
        Settings()


def test_build_phases_have_their_own_stuck_deadlines() -> None:
    settings = Settings(source_timeout_s=100, build_timeout_s=900)
    assert settings.stuck_deadline_s_for(Phase.PULLING_SOURCE) == 100 + BUILD_STUCK_MARGIN_S
    assert settings.stuck_deadline_s_for(Phase.BUILDING) == 900 + BUILD_STUCK_MARGIN_S
    assert settings.stuck_deadline_s_for(Phase.CREATING) == settings.stuck_deadline_s
    overridden = Settings(stuck_deadline_by_phase_s={"building": 30})
    assert overridden.stuck_deadline_s_for(Phase.BUILDING) == 30


def test_every_section_reads_its_own_variables_and_settings_holds_them_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from controller.model.settings import SECTIONS

    names = [name for section in SECTIONS for name in section.model_fields]
    assert len(names) == len(set(names)), "a field in two sections"
    assert set(names) == set(Settings.model_fields)
    monkeypatch.setenv("BERTH_WEBHOOK_MAX_ATTEMPTS", "4")
    monkeypatch.setenv("BERTH_API_ADDR", "bad")
    from controller.model.settings_jobs import ApiSettings

    with pytest.raises(ValidationError, match="api_addr"):
        ApiSettings()
    monkeypatch.setenv("BERTH_API_ADDR", "")
    assert ApiSettings().webhook_max_attempts == Settings().webhook_max_attempts == 4
