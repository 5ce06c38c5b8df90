"""`berth proxy-config`: HAProxy's static configuration for Berth's routes.

Registered on the command group by `controller.app.cli`; used by `deploy/setup-host.sh` and
`deploy/berth-proxy.service` before HAProxy starts. The configuration is written once: a
listener on BERTH_PROXY_HTTP_ADDR, the admin socket at BERTH_PROXY_ADMIN_URL, two route
maps and a pool of backends (`controller.policy.haproxy` says why). Berth programs the rest
at run time; nothing here talks to the proxy or the database.
"""

from __future__ import annotations

from pathlib import Path

import click

from controller.model.settings import Settings
from controller.policy.haproxy import DEFAULT_POOL_SIZE, EXACT_MAP, PREFIX_MAP, haproxy_config


@click.command("proxy-config")
@click.option(
    "--maps",
    "map_folder",
    default="/var/lib/berth/proxy",
    show_default=True,
    help="folder of the route maps (created, with empty maps, if missing)",
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
    folder = Path(map_folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in (EXACT_MAP, PREFIX_MAP):
        (folder / name).touch()
    if settings.proxy_admin_url.startswith("unix://"):
        Path(settings.proxy_admin_url.removeprefix("unix://")).parent.mkdir(
            parents=True, exist_ok=True
        )
    text = haproxy_config(
        settings.proxy_http_addr, settings.proxy_admin_url, str(folder), pool_size
    )
    if target == "-":
        click.echo(text, nl=False)
    else:
        Path(target).write_text(text)


def register(group: click.Group) -> None:
    group.add_command(proxy_config)
