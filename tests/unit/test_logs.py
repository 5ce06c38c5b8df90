"""Log lines are JSON with the node, deployment, term and phase bound."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from controller.observability.logs import configure, set_node


def test_json_lines_carry_bound_context(capsys: pytest.CaptureFixture[str]) -> None:
    configure(level="info", fmt="json")
    set_node("node-1")
    structlog.contextvars.bind_contextvars(deployment="web", term=7, phase="creating")
    try:
        structlog.get_logger("berth.test").info("created berth-web-0", replica=0)
        logging.getLogger("apscheduler.test").warning("from the standard library")
    finally:
        structlog.contextvars.clear_contextvars()
    lines = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    assert lines[0]["event"] == "created berth-web-0"
    assert {
        k: lines[0][k] for k in ("node", "deployment", "term", "phase", "replica", "level")
    } == {
        "node": "node-1",
        "deployment": "web",
        "term": 7,
        "phase": "creating",
        "replica": 0,
        "level": "info",
    }
    assert lines[1]["event"] == "from the standard library" and lines[1]["node"] == "node-1"
