"""Shared test setup: Berth's logging configured once, as in the daemon."""

from __future__ import annotations

import os

from controller.observability.logs import configure

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
configure(level="info", fmt="json")
