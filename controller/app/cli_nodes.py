"""`berth nodes`, `berth node drain|pause|activate NAME` and `berth replicas [NAME]`: where
Berth's replicas run.

Registered on the command group by `controller.app.cli`. All read and write Postgres only:
the leader records the runtime's nodes and each replica's node (the `nodes` and `replicas`
views) and carries out a wish written to `cluster_nodes.wanted_availability` (a drain moves
Berth's replicas off start-first, then drains the node in Swarm). The same is plain SQL:
`UPDATE cluster_nodes SET wanted_availability = 'drain' WHERE name = '...'`.
"""

from __future__ import annotations

import json

import click

from controller.app.cli_common import exit_codes, open_database, output_option, print_table
from controller.model.errors import NotFound
from controller.model.nodes import Availability
from controller.model.settings import Settings


@click.command("nodes")
@output_option
def nodes(output: str) -> None:
    """The runtime's nodes: address, role, availability, state, labels and Berth's replicas."""
    settings = Settings()
    with exit_codes():
        rows = open_database(settings).nodes.nodes(settings.cluster)
        if output == "json":
            click.echo(json.dumps(rows, default=str, indent=2))
            return
        table = [("NAME", "ADDRESS", "ROLE", "AVAILABILITY", "STATE", "REPLICAS", "LABELS", "NOTE")]
        for row in rows:
            wanted = row["wanted_availability"]
            availability = row["availability"] + (
                f" (wanted {wanted})" if wanted and wanted != row["availability"] else ""
            )
            labels = ",".join(f"{k}={v}" for k, v in sorted((row["labels"] or {}).items()))
            table.append(
                (
                    row["name"],
                    row["address"] or "-",
                    row["role"],
                    availability,
                    row["state"],
                    str(row["replicas"]),
                    labels or "-",
                    row["note"] or "",  # the last column: whole
                )
            )
        print_table(table)


@click.group("node")
def node() -> None:
    """Drain, pause or activate a node (by name, hostname or id)."""


def _want(name: str, wanted: Availability) -> None:
    settings = Settings()
    with exit_codes():
        matched = open_database(settings).nodes.want_availability(settings.cluster, name, wanted)
        if not matched:
            raise NotFound(f"node {name!r} not found (berth nodes lists them)")
        for found in matched:
            click.echo(f"node/{found}: {wanted} requested; `berth nodes` shows how it goes")


@node.command("drain")
@click.argument("name")
def drain(name: str) -> None:
    """Move Berth's replicas off the node (start-first), then drain it."""
    _want(name, Availability.DRAIN)


@node.command("pause")
@click.argument("name")
def pause(name: str) -> None:
    """The node keeps its replicas and takes no new ones."""
    _want(name, Availability.PAUSE)


@node.command("activate")
@click.argument("name")
def activate(name: str) -> None:
    """The node takes replicas again."""
    _want(name, Availability.ACTIVE)


@click.command("replicas")
@click.argument("deployment", required=False)
@output_option
def replicas(deployment: str | None, output: str) -> None:
    """Where each replica runs: revision, slot, node, state, health, address, restarts."""
    with exit_codes():
        rows = open_database(Settings()).nodes.replicas(deployment)
        if output == "json":
            click.echo(json.dumps(rows, default=str, indent=2))
            return
        print_table(replica_table(rows, with_deployment=deployment is None))


def replica_table(
    rows: list[dict[str, object]], with_deployment: bool = True
) -> list[tuple[str, ...]]:
    """The replicas view as a table (also under `berth describe`)."""
    head = ("SLOT", "REVISION", "NODE", "STATE", "HEALTH", "ADDRESS", "RESTARTS", "NOTE")
    table: list[tuple[str, ...]] = [(("DEPLOYMENT",) if with_deployment else ()) + head]
    for row in rows:
        cells = tuple(
            str(row[key] if row[key] not in (None, "") else "-")
            for key in ("slot", "revision", "node", "state", "health", "address", "restarts")
        )
        note = (str(row["note"] or ""))[:60]
        table.append(((str(row["deployment"]),) if with_deployment else ()) + cells + (note,))
    return table


def register(group: click.Group) -> None:
    group.add_command(nodes)
    group.add_command(node)
    group.add_command(replicas)
