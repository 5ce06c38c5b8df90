"""`berth token create|list|revoke`: bearer tokens of the HTTP API.

Registered on the command group by `controller.app.cli`. A token is printed once, at
creation; Postgres keeps only its sha256 (`api_tokens`). `read` tokens may call every GET
route and the stream; `write` tokens may also change deployments and builds.
"""

from __future__ import annotations

import json

import click

from controller.app.cli_common import exit_codes, open_database, output_option, print_table
from controller.model.settings import Settings


@click.group()
def token() -> None:
    """API tokens: create (shown once), list, revoke."""


@token.command("create")
@click.option("--scope", type=click.Choice(["read", "write"]), required=True)
@click.option("--name", help="a name to list and revoke it by (default: scope-N)")
def token_create(scope: str, name: str | None) -> None:
    """Create a token and print it (only now: it is stored hashed)."""
    with exit_codes():
        database = open_database(Settings())
        if name is None:
            name = f"{scope}-{len(database.api.tokens()) + 1}"
        secret, row = database.api.create_token(name, scope)
        click.echo(secret)
        click.echo(
            f"token {row['name']!r} ({row['scope']}) created; it is not shown again", err=True
        )


@token.command("list")
@output_option
def token_list(output: str) -> None:
    """Every token's name, scope, and when it was made, last used and revoked."""
    with exit_codes():
        rows = open_database(Settings()).api.tokens()
        if output == "json":
            click.echo(json.dumps(rows, default=str, indent=2))
            return
        table: list[tuple[object, ...]] = [("NAME", "SCOPE", "CREATED", "LAST USED", "REVOKED")]
        for row in rows:
            table.append(
                (
                    row["name"],
                    row["scope"],
                    f"{row['created_at']:%Y-%m-%d %H:%M}",
                    f"{row['last_used_at']:%Y-%m-%d %H:%M}" if row["last_used_at"] else "-",
                    f"{row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else "-",
                )
            )
        print_table(table)


@token.command("revoke")
@click.argument("name")
def token_revoke(name: str) -> None:
    """Revoke a token: the next request with it gets 401."""
    with exit_codes():
        open_database(Settings()).api.revoke_token(name)
        click.echo(f"token {name!r} revoked")


def register(group: click.Group) -> None:
    group.add_command(token)
