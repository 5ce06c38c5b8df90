"""Shared plumbing of the `berth` commands: exit codes, the database, output formats.

Imported by `controller.app.cli` (the command group and the deployment commands) and
`controller.app.cli_builds` (builds, logs, cancel, retry, upload).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from controller.gateways.postgres import Database
from controller.model.errors import (
    Conflict,
    DatabaseRejected,
    DatabaseUnavailable,
    DockerUnavailable,
    InvalidSpec,
    NotFound,
    PermissionDenied,
    SchemaMissing,
    SourceInvalid,
)
from controller.model.settings import Settings

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_FOUND, EXIT_INVALID, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4, 5
EXIT_PERMISSION, EXIT_SCHEMA, EXIT_CONFLICT = 6, 7, 8
F = TypeVar("F", bound=Callable[..., Any])


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    from controller.gateways.embedded import embedded_database_url

    return embedded_database_url(settings.data_dir)


@contextmanager
def exit_codes() -> Iterator[None]:
    """Map Berth's errors to documented exit codes with a one-line message on stderr."""
    try:
        yield
    except NotFound as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_NOT_FOUND)
    except PermissionDenied as error:
        click.echo(f"error: permission denied: {error}", err=True)
        sys.exit(EXIT_PERMISSION)
    except SchemaMissing as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_SCHEMA)
    except Conflict as error:
        click.echo(f"error: conflict: {error}", err=True)
        sys.exit(EXIT_CONFLICT)
    except (InvalidSpec, SourceInvalid, DatabaseRejected) as error:
        click.echo(f"error: invalid deployment: {error}", err=True)
        sys.exit(EXIT_INVALID)
    except (DatabaseUnavailable, DockerUnavailable) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_UNAVAILABLE)


def open_database(settings: Settings) -> Database:
    """A connection pool for an operator's command: checks that the server takes writes (a
    standby is refused, naming it) and the schema; never migrates."""
    database = Database(database_url(settings), pool_size=2)
    database.schema.ping(timeout_s=10)
    database.schema.check_schema()
    return database


output_option = click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts",
)


def print_table(rows: Sequence[Sequence[object]]) -> None:
    """Left-aligned columns, the first row as header."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for line in rows:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
