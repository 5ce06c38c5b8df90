"""Known faults of engine versions (policy/engine_faults): which versions are warned of,
and what the warning says Berth's stop concurrency does about it."""

from __future__ import annotations

import pytest

from controller.policy.engine_faults import engine_faults, release_of


@pytest.mark.parametrize(
    ("version", "release"),
    [
        ("20.10.24+dfsg1", (20, 10, 24)),  # Debian 12's docker.io
        ("24.0.7", (24, 0, 7)),
        ("25.0.0-rc.1", (25, 0, 0)),
        ("v1.13", (1, 13, 0)),
        ("dev", None),
        ("", None),
    ],
)
def test_a_release_is_read_from_the_version_an_engine_reports(
    version: str, release: tuple[int, int, int] | None
) -> None:
    assert release_of(version) == release


@pytest.mark.parametrize(
    ("version", "warned"),
    [
        ("20.10.24+dfsg1", True),
        ("20.10.26", True),
        ("19.03.15", True),
        ("20.10.27", False),  # the fix
        ("23.0.0", False),
        ("27.3.1", False),
        ("master-dockerproject-2024", False),  # unreadable: nothing claimed
    ],
)
def test_the_libnetwork_deadlock_is_warned_of_before_its_fix(version: str, warned: bool) -> None:
    found = engine_faults(version, stop_concurrency=8)
    assert bool(found) == warned
    if warned:
        [warning] = found
        assert "moby/libnetwork#2649" in warning and "fixed in 20.10.27" in warning
        assert "BERTH_STOP_CONCURRENCY=8" in warning and "lower it" not in warning


def test_a_stop_concurrency_above_the_safe_one_is_told_to_come_down() -> None:
    [warning] = engine_faults("20.10.24+dfsg1", stop_concurrency=32)
    assert "BERTH_STOP_CONCURRENCY=32 is above 8" in warning and "lower it" in warning
