"""The `berth` command line: the daemon, migrations, and the operator's read/write helpers.

Entry point `main` (pyproject's `berth` script). Commands talk to Postgres only through
`controller.gateways.postgres`; `run` builds the daemon. Only `berth migrate` and `berth run`
(unless BERTH_MIGRATE_ON_START=false) change the schema: the other commands need only the
rights they use, so a read-only role can run `berth get`. Exit codes are part of the
interface: 0 success, 1 unexpected error, 2 usage error, 3 deployment not found, 4 invalid
spec (with the field named), 5 database or Docker unreachable, 6 permission denied (the role
and the table named), 7 no Berth schema, or an older one (run `berth migrate`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from controller.app.cli_builds import register as register_build_commands
from controller.app.cli_common import (
    EXIT_ERROR,
    EXIT_USAGE,
    database_url,
    exit_codes,
    open_database,
    output_option,
    print_table,
)
from controller.app.cli_nodes import register as register_node_commands
from controller.app.cli_nodes import replica_table
from controller.app.cli_proxy import register as register_proxy_commands
from controller.app.cli_rollout import register as register_rollout_commands
from controller.app.cli_tokens import register as register_token_commands
from controller.app.operations import shown_spec
from controller.gateways.postgres import Database
from controller.model.errors import InvalidSpec, NotFound
from controller.model.settings import Settings
from controller.model.source import SourceSpec
from controller.model.spec import parse_spec


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Berth: keeps Docker containers in line with the deployments table in PostgreSQL."""


@cli.command()
def run() -> None:
    """Run the daemon until SIGTERM or SIGINT."""
    from controller.app.daemon import Daemon
    from controller.observability.logs import configure

    settings = Settings()
    configure(settings.log_level, settings.log_format)
    with exit_codes():
        Daemon(settings, database_url(settings)).run_until_signalled()


@cli.command()
def migrate() -> None:
    """Apply the schema migrations (safe while other daemons start too)."""
    settings = Settings()
    with exit_codes():
        database = Database(database_url(settings), pool_size=2)
        applied = database.schema.migrate(settings.database_roles)
        click.echo(
            f"schema at version {database.schema.schema_version()}"
            + (f" (applied {', '.join(map(str, applied))})" if applied else " (up to date)")
        )


def _load_documents(path: str) -> list[dict[str, Any]]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        raise InvalidSpec(f"{path}: not valid YAML or JSON: {error}") from error
    flat: list[dict[str, Any]] = []
    for document in documents:
        items = document if isinstance(document, list) else [document]
        for item in items:
            if not isinstance(item, dict):
                raise InvalidSpec(
                    f"{path}: each deployment must be a mapping, got {type(item).__name__}"
                )
            flat.append(item)
    return flat


@cli.command()
@click.option(
    "-f", "--filename", required=True, help="YAML or JSON file of deployments, - for stdin"
)
def apply(filename: str) -> None:
    """Create or update deployments from a file (one mapping, a list, or several YAML documents)."""
    settings = Settings()
    with exit_codes():
        specs = []
        for index, document in enumerate(_load_documents(filename)):
            try:
                specs.append(parse_spec(document))
            except InvalidSpec as error:
                label = document.get("name", f"document {index}")
                raise InvalidSpec(f"{label}: {error}") from error
        database = open_database(settings)
        for spec in specs:
            generation, inserted = database.deployments.upsert_deployment(
                spec.model_dump(mode="json")
            )
            verb = "created" if inserted else "configured"
            click.echo(f"deployment/{spec.name} {verb} (generation {generation})")


def _source_text(source: dict[str, Any] | None) -> str:
    if not source:
        return "-"
    return SourceSpec.model_validate(source).describe()


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


@cli.command()
@click.argument("name", required=False)
@click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "wide", "json"]),
    default="table",
    show_default=True,
    help="table for people (wide: with each replica's node), json for scripts",
)
def get(name: str | None, output: str) -> None:
    """List deployments with phase, progress and ready/desired replicas."""
    settings = Settings()
    with exit_codes():
        database = open_database(settings)
        rows = database.views.overview(name)
        if name and not rows:
            raise NotFound(f"deployment {name!r} not found")
        if output == "json":
            click.echo(json.dumps(rows, default=str, indent=2))
            return
        wide = output == "wide"
        where: dict[str, list[str]] = {}
        for replica in database.nodes.replicas(name) if wide else []:
            where.setdefault(str(replica["deployment"]), []).append(
                f"{replica['slot']}@{replica['node']}"
            )
        head = ("NAME", "PHASE", "PROGRESS", "READY", "GENERATION", "IMAGE", "MESSAGE")
        table = [head + (("NODES",) if wide else ())]
        for row in rows:
            cells = (
                row["name"],
                row["phase"],
                f"{row['phase_progress']}%",
                f"{row['ready_replicas']}/{_or_dash(row['desired_replicas'])}",
                f"{row['observed_generation']}/{row['generation'] or '-'}",
                row["image"] or _source_text(row.get("source")),
                (row["message"] or "")[: 200 if wide else 60],
            )
            nodes = " ".join(where.get(row["name"], [])) or "-"
            table.append(cells + ((nodes,) if wide else ()))
        print_table(table)


@cli.command()
@click.argument("name")
@click.option("--events", "event_count", default=15, show_default=True, help="recent events shown")
@output_option
def describe(name: str, event_count: int, output: str) -> None:
    """Show one deployment: spec, status and recent events."""
    settings = Settings()
    with exit_codes():
        database = open_database(settings)
        spec = database.views.spec_row(name)
        status = database.views.status_row(name)
        if spec is None and status is None:
            raise NotFound(f"deployment {name!r} not found")
        events = database.views.events(name, event_count)
        if output == "json":
            click.echo(
                json.dumps(
                    {"spec": spec, "status": status, "events": events}, default=str, indent=2
                )
            )
            return
        click.echo(f"Name:        {name}")
        if spec:
            if spec["source"]:
                click.echo(
                    f"Source:      {_source_text(spec['source'])} (priority {spec['priority']})"
                )
                build = database.builds.latest_build(name)
                if build is not None:
                    ended = f", {build.error.splitlines()[0]}" if build.error else ""
                    reused = " (reused)" if build.cached else ""
                    click.echo(
                        f"Build:       {build.id} {build.status}{reused}"
                        f" {(build.revision or '')[:12]} -> {build.image or '-'}{ended}"
                    )
            else:
                click.echo(f"Image:       {spec['image']}")
            click.echo(f"Replicas:    {spec['replicas']}")
            click.echo(f"Generation:  {spec['generation']}")
            click.echo("Spec:        " + json.dumps(shown_spec(spec), default=str))
        else:
            click.echo("Spec:        (deleted; containers being removed)")
        if status:
            click.echo(
                f"Phase:       {status['phase']} ({status['phase_progress']}%)"
                f" since {status['phase_updated_at']}"
            )
            click.echo(f"Ready:       {status['ready_replicas']}/{status['desired_replicas']}")
            click.echo(f"Observed:    generation {status['observed_generation']}")
            if status["message"]:
                click.echo(f"Message:     {status['message']}")
            placed = database.nodes.replicas(name)
            if placed:
                click.echo("Replicas:")
                for line in replica_table(placed, with_deployment=False):
                    click.echo("  " + "  ".join(line))
        click.echo("Events (newest first):")
        for event in events:
            transition = (
                f"{event['phase_from'] or ''} -> {event['phase_to'] or ''}"
                if event["kind"] == "phase"
                else (event["action"] or event["kind"])
            )
            click.echo(
                f"  {event['at']:%Y-%m-%d %H:%M:%S}  {event['level']:<7} {transition:<28}"
                f" {event['message']}"
            )


@cli.command()
@click.argument("name")
def delete(name: str) -> None:
    """Delete a deployment; Berth then removes its containers."""
    settings = Settings()
    with exit_codes():
        if not open_database(settings).deployments.delete_deployment(name):
            raise NotFound(f"deployment {name!r} not found")
        click.echo(f"deployment/{name} deleted")


@cli.command()
@output_option
def status(output: str) -> None:
    """Show the cluster's leader, its term, and every replica seen in the last 30 s."""
    settings = Settings()
    with exit_codes():
        database = open_database(settings)
        leader = database.views.leader(settings.cluster)
        nodes = database.views.nodes(settings.cluster)
        if output == "json":
            body = {"cluster": settings.cluster, "leader": leader, "nodes": nodes}
            click.echo(json.dumps(body, default=str, indent=2))
            return
        click.echo(f"Cluster:  {settings.cluster}")
        if leader:
            holder = f"{leader['holder_host']} pid {leader['holder_pid']} ({leader['holder_id']})"
            click.echo(f"Leader:   {holder}")
            click.echo(f"Term:     {leader['term']} since {leader['acquired_at']}")
        else:
            click.echo("Leader:   none elected yet")
        click.echo("Replicas:")
        for node in nodes:
            term = node["term"] if node["term"] is not None else "-"
            click.echo(
                f"  {node['role']:<8} {node['host']} pid {node['pid']:<7}"
                f" http {node['http_addr']:<22} term {term!s:<4}"
                f" seen {float(node['seen_seconds_ago']):.1f}s ago"
            )
            if node.get("note"):
                click.echo(f"           why: {node['note']}")


@cli.group()
def bench() -> None:
    """Benchmarks: print figures (they assert nothing). See README, Benchmarks."""


@bench.command("run")
@click.argument("scenarios", nargs=-1)
@click.option("--smoke", is_flag=True, help="tiny sizes: check that every scenario still works")
@click.option("--deployments", default=100, show_default=True, help="update size")
@click.option(
    "--cold-sizes", default="50,200", show_default=True, help="cold: deployments per series"
)
@click.option("--pairs", default=5, show_default=True, help="cold: interleaved pairs per series")
@click.option(
    "--profile",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="cold: write py-spy samples of the daemon (collapsed stacks) into this folder",
)
@click.option(
    "--threads", default=8, show_default=True, help="parallelism, Berth's and docker-py's"
)
@click.option("--trials", default=50, show_default=True, help="latency trials")
@click.option("--steady-deployments", default=1000, show_default=True)
@click.option("--idle-seconds", default=60.0, show_default=True)
@click.option("--no-swarm", is_flag=True, help="skip the Swarm baseline")
@click.option(
    "--database-url", default=None, help="external Postgres; default: a temporary embedded one"
)
def bench_run(
    scenarios: tuple[str, ...],
    smoke: bool,
    deployments: int,
    cold_sizes: str,
    pairs: int,
    profile: Path | None,
    threads: int,
    trials: int,
    steady_deployments: int,
    idle_seconds: float,
    no_swarm: bool,
    database_url: str | None,
) -> None:
    """Run benchmark SCENARIOS (default: planner latency cold update steady failover; chaos
    runs only when named)."""
    from controller.bench import runner as benchmarks

    names = list(scenarios) or list(benchmarks.SCENARIOS)
    unknown = set(names) - set(benchmarks.SCENARIOS) - set(benchmarks.ON_REQUEST)
    if unknown:
        raise click.UsageError(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if smoke:
        options = benchmarks.BenchOptions.smoke(database_url)
    else:
        options = benchmarks.BenchOptions(
            deployments=deployments,
            cold_sizes=tuple(int(size) for size in cold_sizes.split(",")),
            cold_pairs=pairs,
            profile=profile,
            threads=threads,
            trials=trials,
            steady_deployments=steady_deployments,
            idle_s=idle_seconds,
            database_url=database_url,
        )
    options.swarm = options.swarm and not no_swarm
    benchmarks.run(names, options)


@bench.command("failover")
@click.option("--trials", default=10, show_default=True)
@click.option("--replicas", "replica_count", default=3, show_default=True)
@click.option("--deployments", default=10, show_default=True)
@click.option(
    "--database-url", default=None, help="external Postgres; default: a temporary embedded one"
)
def bench_failover(
    trials: int, replica_count: int, deployments: int, database_url: str | None
) -> None:
    """SIGKILL the leader N times: kill -> new leader acting, kill -> reconverged."""
    from controller.bench import failover as benchmarks

    result = benchmarks.failover(trials, replica_count, deployments, database_url)
    benchmarks.print_failover(result, replica_count, deployments)


@cli.command("db-url")
def db_url() -> None:
    """Print the database URL Berth uses (starting the embedded Postgres if that is the one)."""
    with exit_codes():
        click.echo(database_url(Settings()))


register_build_commands(cli)
register_rollout_commands(cli)
register_token_commands(cli)
register_node_commands(cli)
register_proxy_commands(cli)


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(EXIT_ERROR)
    except click.ClickException as error:
        error.show()
        sys.exit(EXIT_USAGE if isinstance(error, click.UsageError) else EXIT_ERROR)
    except SystemExit:
        raise
    except Exception as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":
    main()
