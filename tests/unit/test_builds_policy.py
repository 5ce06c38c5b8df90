"""The pure build decisions: what a pass does with a source deployment, retries and dead
letters, and what `docker build` output says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.model.builds import BuildRecord, BuildStatus
from controller.model.phases import Phase
from controller.policy.builds import (
    SourceAction,
    after_failure,
    decide,
    failed_step,
    parse_step,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RETRY = " (`berth retry web` builds again)"
SOURCE = {"git": {"url": "file:///src", "ref": "main"}}


def build(**changes: Any) -> BuildRecord:
    values: dict[str, Any] = {
        "id": 7,
        "deployment": "web",
        "generation": 2,
        "source": SOURCE,
        "source_key": "k",
        "status": BuildStatus.QUEUED,
        "position": 2,
        "queue_length": 3,
    }
    return BuildRecord(**(values | changes))


@pytest.mark.parametrize(
    ("current", "generation", "action", "phase", "message"),
    [
        (None, 1, SourceAction.ENQUEUE, Phase.QUEUED, ""),
        (build(source_key="other"), 2, SourceAction.ENQUEUE, Phase.QUEUED, ""),
        (build(), 2, SourceAction.WAIT, Phase.QUEUED, "build queued: position 2 of 3"),
        (build(), 5, SourceAction.WAIT, Phase.QUEUED, "build queued: position 2 of 3"),
        (build(status=BuildStatus.RUNNING, step="pulling_source"), 2, SourceAction.WAIT,
         Phase.PULLING_SOURCE, "build 7: fetching git file:///src@main"),
        (build(status=BuildStatus.RUNNING, step="step 3/7", progress=28), 2, SourceAction.WAIT,
         Phase.BUILDING, "build 7: step 3/7"),
        (build(status=BuildStatus.SUCCEEDED, image="berth-build/web:abc"), 9, SourceAction.USE,
         Phase.QUEUED, ""),
        (build(status=BuildStatus.FAILED, error="step 2/3 (RUN x) failed with exit code 3"), 2,
         SourceAction.FAIL, Phase.QUEUED,
         "build 7 failed: step 2/3 (RUN x) failed with exit code 3" + RETRY),
        (build(status=BuildStatus.FAILED), 3, SourceAction.ENQUEUE, Phase.QUEUED, ""),
        (build(status=BuildStatus.DEAD, attempts=3, error="unreachable"), 2, SourceAction.FAIL,
         Phase.QUEUED, "build 7 is dead after 3 attempts: unreachable" + RETRY),
        (build(status=BuildStatus.CANCELLED), 2, SourceAction.FAIL, Phase.QUEUED,
         "build 7 was cancelled" + RETRY),
    ],
)  # fmt: skip
def test_decide(
    current: BuildRecord | None, generation: int, action: SourceAction, phase: Phase, message: str
) -> None:
    decision = decide(current, "k", generation, NOW)
    assert (decision.action, decision.phase, decision.message) == (action, phase, message)


def test_a_running_build_reports_progress_and_its_id() -> None:
    running = build(status=BuildStatus.RUNNING, step="step 3/7", progress=28, revision="c0ffee")
    decision = decide(running, "k", 2, NOW)
    assert decision.progress == 28
    assert decision.metadata == {"build_id": 7, "commit": "c0ffee"}


def test_a_retried_build_says_when_and_why() -> None:
    waiting = build(attempts=1, not_before=NOW + timedelta(seconds=9), error="git: unreachable\nx")
    assert decide(waiting, "k", 2, NOW).message == (
        "build queued: position 2 of 3; attempt 2 at 12:00:09Z (last: git: unreachable)"
    )


def test_credentials_in_a_url_never_reach_the_message() -> None:
    secret = build(status=BuildStatus.RUNNING, source={"git": {"url": "https://u:pw@h/r.git"}})
    assert "pw" not in decide(secret, "k", 2, NOW).message


@given(st.integers(min_value=1, max_value=30), st.integers(min_value=1, max_value=30))
def test_retries_until_max_attempts_then_dead(attempts: int, max_attempts: int) -> None:
    after = after_failure(attempts, max_attempts, base_s=5.0, max_s=120.0)
    if attempts >= max_attempts:
        assert after.status == BuildStatus.DEAD and after.retry_after_s is None
    else:
        assert after.status == BuildStatus.QUEUED
        assert after.retry_after_s is not None and 0 < after.retry_after_s <= 120.0


def test_step_lines_and_the_failing_step() -> None:
    assert parse_step("Step 3/7 : RUN make") == (3, 7, "RUN make")
    assert parse_step(" ---> Running in 1234") is None
    output = [
        "Step 1/3 : FROM base",
        "Step 2/3 : RUN make test",
        "The command '/bin/sh -c make test' returned a non-zero code: 2",
    ]
    assert failed_step(output) == ("step 2/3 (RUN make test)", 2)
    assert failed_step(["unable to prepare context"]) == (None, None)
