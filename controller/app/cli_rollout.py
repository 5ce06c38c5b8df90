"""`berth rollout status|history|undo`: a deployment's rollouts from the command line.

Registered on the command group by `controller.app.cli`. `status` reads the status row
(`--wait` follows it until the rollout settles: active, rolled back or failed);
`history` reads `deployment_revisions`; `undo` writes a revision's spec back into
`deployments` (the row stays the single source of truth; its image is reused: no build,
no pull), so the usual rollout follows.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from controller.app.cli_common import exit_codes, open_database, output_option, print_table
from controller.app.operations import roll_back
from controller.model.errors import NotFound
from controller.model.phases import Phase, settled
from controller.model.settings import Settings

WAIT_POLL_S = 0.25


@click.group()
def rollout() -> None:
    """A deployment's rollouts: status, history, undo."""


@rollout.command("status")
@click.argument("name")
@click.option("--wait", is_flag=True, help="follow until active, rolled back or failed")
@click.option("--timeout", default=600.0, show_default=True, help="seconds --wait waits")
def rollout_status(name: str, wait: bool, timeout: float) -> None:
    """Where the deployment's rollout stands (exit 1 if it ends rolled back or failed)."""
    with exit_codes():
        database = open_database(Settings())
        deadline = time.monotonic() + timeout
        last = None
        while True:
            rows = database.views.overview(name)
            if not rows:
                raise NotFound(f"deployment {name!r} not found")
            row = rows[0]
            line = (
                f"{row['phase']} {row['phase_progress']}%  {row['ready_replicas']}/"
                f"{row['desired_replicas']} ready  generation {row['observed_generation']}/"
                f"{row['generation']}  revision {row['serving_revision'] or '-'}  {row['message']}"
            )
            if line != last:
                click.echo(line)
                last = line
            done = settled(row["phase"], row["observed_generation"], row["generation"])
            if not wait or done or time.monotonic() > deadline:
                if wait and row["phase"] in (Phase.ROLLED_BACK, Phase.FAILED):
                    sys.exit(1)
                return
            time.sleep(WAIT_POLL_S)


@rollout.command("history")
@click.argument("name")
@output_option
def rollout_history(name: str, output: str) -> None:
    """Every revision rolled out, newest first: what it ran and what became of it."""
    with exit_codes():
        rows = open_database(Settings()).revisions.revisions(name)
        if not rows:
            raise NotFound(f"deployment {name!r} has no revisions")
        if output == "json":
            click.echo(json.dumps(rows, default=str, indent=2))
            return
        table: list[tuple[Any, ...]] = [
            ("REVISION", "GENERATION", "OUTCOME", "IMAGE", "REPLICAS", "CREATED", "REASON")
        ]
        for row in rows:
            table.append(
                (
                    row["revision"],
                    row["generation"],
                    row["outcome"],
                    row["image"],
                    row["spec"].get("replicas", "-"),
                    f"{row['created_at']:%Y-%m-%d %H:%M:%S}",
                    (row["reason"] or "")[:60],
                )
            )
        print_table(table)


@rollout.command("undo")
@click.argument("name")
@click.option(
    "--to-revision",
    type=int,
    help="default: after a rollback the serving revision, else the one before it",
)
def rollout_undo(name: str, to_revision: int | None) -> None:
    """Write a revision's spec back into the deployment (its image is reused)."""
    with exit_codes():
        done = roll_back(open_database(Settings()), name, to_revision)
        click.echo(
            f"deployment/{name}: revision {done.revision} ({done.image}) written back; "
            f"generation {done.generation} rolls out"
        )


def register(group: click.Group) -> None:
    group.add_command(rollout)
