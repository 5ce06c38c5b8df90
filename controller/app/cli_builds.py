"""`berth builds`, `berth logs`, `berth cancel`, `berth retry`, `berth upload`: the build
queue and logs from the command line.

Registered on the command group by `controller.app.cli` (`register`). Every command is a
thin view of Postgres (the `builds`, `build_logs` and `build_queue` relations; writes are
the same row changes an operator could make with SQL), except `berth logs` without
`--build`, which reads a container's output from Docker.
"""

from __future__ import annotations

import json
import tarfile
import time
from pathlib import Path

import click

from controller.app.cli_common import exit_codes, open_database, output_option, print_table
from controller.app.operations import build_again, replica_output
from controller.gateways.postgres import Database
from controller.model.builds import FINISHED, BuildStatus
from controller.model.errors import InvalidSpec, NotFound
from controller.model.settings import Settings

FOLLOW_POLL_S = 0.2


def _first_line(text: object, width: int = 60) -> str:
    return str(text or "").splitlines()[0][:width] if text else ""


@click.command()
@click.argument("name", required=False)
@click.option("--dead", is_flag=True, help="only dead-lettered builds (out of attempts)")
@click.option("--limit", default=30, show_default=True, help="rows shown")
@output_option
def builds(name: str | None, dead: bool, limit: int, output: str) -> None:
    """The build queue (with positions, next first) and the history, newest first."""
    with exit_codes():
        rows = open_database(Settings()).builds.builds(name, dead_only=dead, limit=limit)
        if output == "json":
            click.echo(json.dumps(rows, default=str, indent=2))
            return
        table = [
            (
                "ID",
                "DEPLOYMENT",
                "STATUS",
                "POSITION",
                "PRIORITY",
                "ATTEMPTS",
                "REVISION",
                "STEP",
                "DURATION",
                "ERROR",
            )
        ]
        for row in rows:
            position = f"{row['position']}/{row['queue_length']}" if row["position"] else "-"
            duration = f"{row['duration_s']:.1f}s" if row["duration_s"] is not None else "-"
            status = str(row["status"]) + (" (reused)" if row["cached"] else "")
            table.append(
                (
                    row["id"],
                    row["deployment"],
                    status,
                    position,
                    row["priority"],
                    row["attempts"],
                    (row["revision"] or "-")[:12],
                    row["step"] or "-",
                    duration,
                    _first_line(row["error"]),
                )
            )
        print_table(table)


@click.command()
@click.argument("name")
@click.option("--build", "build_logs", is_flag=True, help="the latest build's log, not the app's")
@click.option("--build-id", type=int, help="this build's log")
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines")
@click.option("--replica", default=0, show_default=True, help="which replica's output")
@click.option("--tail", default=100, show_default=True, help="container log lines first shown")
def logs(
    name: str, build_logs: bool, build_id: int | None, follow: bool, replica: int, tail: int
) -> None:
    """A deployment's container output (from Docker), or its build's log (--build)."""
    settings = Settings()
    with exit_codes():
        if build_logs or build_id is not None:
            _follow_build(open_database(settings), name, build_id, follow)
            return
        from controller.gateways.docker_engine import DockerGateway
        from controller.gateways.docker_runtime import DockerRuntime
        from controller.gateways.swarm_runtime import SwarmRuntime

        gateway = DockerGateway(pool_size=1, timeout_s=3600)
        runtime = SwarmRuntime(gateway) if settings.runtime == "swarm" else DockerRuntime(gateway)
        for text in replica_output(runtime, settings.cluster, name, replica, tail, follow):
            click.echo(text, nl=False)


def _follow_build(database: Database, name: str, build_id: int | None, follow: bool) -> None:
    if build_id is None:
        latest = database.builds.latest_build(name)
        if latest is None:
            raise NotFound(f"deployment {name!r} has no builds")
        build_id = latest.id
    after = 0
    while True:
        status = database.builds.build_status(build_id)  # read before the lines: none is missed
        if status is None:
            raise NotFound(f"build {build_id} not found")
        for row in database.builds.build_logs(build_id, after):
            after = row["seq"]
            prefix = "berth| " if row["stream"] == "berth" else ""
            click.echo(f"{prefix}{row['line']}")
        if not follow or BuildStatus(status) in FINISHED:
            if follow:
                click.echo(f"berth| build {build_id} {status}")
            return
        time.sleep(FOLLOW_POLL_S)


@click.command()
@click.argument("name")
def cancel(name: str) -> None:
    """Cancel the deployment's waiting or running build (a running one stops within 2 s)."""
    with exit_codes():
        rows = open_database(Settings()).builds.cancel_builds(name)
        if not rows:
            raise NotFound(f"deployment {name!r} has no build waiting or running")
        for row in rows:
            if row["status"] == "cancelled":
                click.echo(f"build {row['id']} cancelled (it had not started)")
            else:
                click.echo(f"build {row['id']}: cancel requested; it stops within 2 s")


@click.command()
@click.argument("name")
def retry(name: str) -> None:
    """Build the deployment's source again (re-resolving a branch), in the queue as usual."""
    with exit_codes():
        build = build_again(open_database(Settings()), name, "retry")
        click.echo(f"build {build.id} queued for {name} (generation {build.generation})")


@click.command()
@click.argument("filename", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def upload(filename: Path) -> None:
    """Store a tar or tar.gz in Postgres for a source {"archive": {"sha256": ...}}."""
    settings = Settings()
    with exit_codes(), filename.open("rb") as stream:
        if not tarfile.is_tarfile(filename):
            raise InvalidSpec(f"archive: {filename} is not a tar or tar.gz file")
        database = open_database(settings)
        sha256, size, new = database.builds.store_archive(
            stream, filename.name, settings.archive_max_bytes
        )
        click.echo(f"{'uploaded' if new else 'already uploaded'}: {filename.name}, {size} bytes")
        click.echo(f"sha256 {sha256}")
        click.echo(json.dumps({"archive": {"sha256": sha256}}))


def register(group: click.Group) -> None:
    for command in (builds, logs, cancel, retry, upload):
        group.add_command(command)
