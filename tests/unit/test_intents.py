"""Judging an unfinished mutation from what Docker shows (controller.policy.intents)."""

from __future__ import annotations

import pytest

from controller.model.records import MutationAction
from controller.model.replicas import ObservedReplica, RunState
from controller.policy.intents import judge


def container(state: str) -> ObservedReplica:
    return ObservedReplica("id", "berth-web-0", "web", 0, "h", state=RunState(state))


@pytest.mark.parametrize(
    ("action", "found", "resolution"),
    [
        ("create", None, "not done"),
        ("create", container("created"), "done"),
        ("start", container("running"), "done"),
        ("start", container("exited"), "not done"),
        ("start", None, "unknown"),
        ("remove", None, "done"),
        ("remove", container("removing"), "done"),
        ("remove", container("running"), "not done"),
        ("restart", container("running"), "unknown"),
    ],
)
def test_judge(action: str, found: ObservedReplica | None, resolution: str) -> None:
    assert judge(MutationAction(action), found)[0] == resolution
