"""`berth proxy-config`: HAProxy's static configuration for Berth's routes; `berth certs`
and `berth cert renew HOST`, `berth cert ca`: the HTTPS routes' certificates; `berth
registry-config`: the image registry's configuration (`gateways.registry_server`).

Registered on the command group by `controller.app.cli`; used by `deploy/setup-host.sh` and
`deploy/berth-proxy.service` before HAProxy starts. The configuration is written once: a
listener on BERTH_PROXY_HTTP_ADDR (and BERTH_PROXY_HTTPS_ADDR), the admin socket at
BERTH_PROXY_ADMIN_URL, the route, ACME and redirect maps, a certificate list and a pool of
backends (`controller.policy.haproxy` says why). Berth programs the rest
at run time; `proxy-config` talks to neither the proxy nor the database. The certificate
commands read `certificate_status` (never a key) and ask the leader for a renewal
(`certificates.renew_requested_at`), which its next sweep carries out.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from controller.app.cli_common import exit_codes, open_database, output_option, print_table
from controller.gateways.haproxy_server import write_configuration
from controller.gateways.registry_server import registry_configuration
from controller.model.errors import NotFound
from controller.model.settings import Settings
from controller.policy.haproxy import DEFAULT_POOL_SIZE


@click.command("proxy-config")
@click.option(
    "--maps",
    "map_folder",
    default="/var/lib/berth/proxy",
    show_default=True,
    help="folder of the route maps, the certificate list and the default certificate "
    "(made if missing)",
)
@click.option(
    "--pool-size",
    default=DEFAULT_POOL_SIZE,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="backends declared for routes (one per route of a deployment)",
)
@click.option("--output", "-o", "target", default="-", help="file to write; - for stdout")
def proxy_config(map_folder: str, pool_size: int, target: str) -> None:
    """Print (or write) HAProxy's configuration for Berth's routes."""
    settings = Settings()
    if not settings.proxy_admin_url:
        raise click.UsageError("BERTH_PROXY_ADMIN_URL is empty: no proxy to configure")
    if settings.proxy_admin_url.startswith("unix://"):
        Path(settings.proxy_admin_url.removeprefix("unix://")).parent.mkdir(
            parents=True, exist_ok=True
        )
    text = write_configuration(
        Path(map_folder),
        settings.proxy_http_addr,
        settings.proxy_https_addr,
        settings.proxy_admin_url,
        pool_size,
    )
    if target == "-":
        click.echo(text, nl=False)
    else:
        Path(target).write_text(text)


@click.command("registry-config")
@click.option(
    "--root",
    default="/var/lib/berth/registry",
    show_default=True,
    help="folder of the registry's storage",
)
@click.option("--output", "-o", "target", default="-", help="file to write; - for stdout")
def registry_config(root: str, target: str) -> None:
    """Print (or write) the registry's configuration: listening on BERTH_REGISTRY (default
    127.0.0.1:5000), deletes enabled, no authentication (keep it on a private address)."""
    text = registry_configuration(Settings().registry or "127.0.0.1:5000", Path(root)) + "\n"
    if target == "-":
        click.echo(text, nl=False)
    else:
        Path(target).write_text(text)


@click.command("certs")
@output_option
def certs(output: str) -> None:
    """The certificates of HTTPS routes: issuer, serial, validity, renewal, last error."""
    with exit_codes():
        rows = open_database(Settings()).certificates.status()
        if output == "json":
            click.echo(json.dumps(rows, default=str, indent=2))
            return
        table = [("HOST", "ISSUER", "SERIAL", "NOT AFTER", "RENEW AFTER", "ATTEMPTS", "ERROR")]
        for row in rows:
            table.append(
                (
                    row["host"],
                    row["issuer"],
                    (row["serial"] or "-")[:16],
                    f"{row['not_after']:%Y-%m-%d %H:%M}" if row["not_after"] else "-",
                    f"{row['renew_after']:%Y-%m-%d %H:%M}" if row["renew_after"] else "-",
                    str(row["attempts"]),
                    (row["last_error"] or "")[:60],
                )
            )
        print_table(table)


@click.group("cert")
def cert() -> None:
    """One HTTPS route's certificate."""


@cert.command("renew")
@click.argument("host")
def renew(host: str) -> None:
    """Renew HOST's certificate at the leader's next sweep (BERTH_CERTIFICATE_INTERVAL_S)."""
    with exit_codes():
        if not open_database(Settings()).certificates.request_renewal(host):
            raise NotFound(f"no certificate for host {host!r} (see `berth certs`)")
        click.echo(f"renewal of {host} requested")


@cert.command("ca")
def authority() -> None:
    """Print the certificate of Berth's own CA (routes with issuer internal), to trust it."""
    with exit_codes():
        found = open_database(Settings()).certificates.authority_certificate("internal")
        if found is None:
            raise NotFound(
                "no internal CA yet: it is made for the first route with issuer internal"
            )
        click.echo(found, nl=False)


def register(group: click.Group) -> None:
    for command in (proxy_config, registry_config, certs, cert):
        group.add_command(command)
