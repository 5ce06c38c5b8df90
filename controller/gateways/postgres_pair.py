"""A Postgres 15 primary and a streaming standby on loopback, for the failover tests.

Used by tests/integration (the database's failover). Debian's server binaries
(`/usr/lib/postgresql/15/bin`, installed by `deploy/setup-host.sh`), run as the `postgres`
user (the server refuses root): `initdb` makes the primary, `pg_basebackup -R` the standby,
which streams from it; both listen on 127.0.0.1 only, on ports of their own, with their
data, sockets and logs in one temporary folder. `synchronous=True` makes the standby
synchronous (`synchronous_standby_names = '*'` on the primary). `url(...)` gives a libpq
URL naming one or both servers; `stop(...)` stops one (`immediate`: as if its machine
were lost), `promote` makes the standby a primary. `close` stops both, removes the folder.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from controller.gateways.processes import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
USER = "postgres"
START_TIMEOUT_S = 60.0


def available() -> bool:
    return (BIN / "postgres").exists()


def _as_postgres(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", USER, "--", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


class PostgresPair:
    """`primary` and `standby` (names of the two servers), each a port and a data folder."""

    def __init__(self, synchronous: bool = False) -> None:
        self.synchronous = synchronous
        self.folder = Path(tempfile.mkdtemp(prefix="bpg", dir="/tmp"))
        shutil.chown(self.folder, USER, USER)
        self.ports = {"primary": free_port(), "standby": free_port()}
        self.data = {name: self.folder / name for name in self.ports}
        try:
            self._make_primary()
            self._make_standby()
            if synchronous:  # on the primary only, once its standby streams (ALTER SYSTEM)
                self.psql("primary", "ALTER SYSTEM SET synchronous_standby_names = '*'")
                self.psql("primary", "SELECT pg_reload_conf()")
        except BaseException:
            self.close()
            raise

    def url(self, *servers: str, database: str = "berth", read_write: bool = True) -> str:
        """A libpq URL naming `servers` in order; with several, `target_session_attrs`."""
        hosts = ",".join(f"127.0.0.1:{self.ports[name]}" for name in servers)
        query = "?target_session_attrs=read-write" if read_write and len(servers) > 1 else ""
        return f"postgresql://{USER}@{hosts}/{database}{query}"

    def _make_primary(self) -> None:
        data = self.data["primary"]
        _as_postgres(str(BIN / "initdb"), "-N", "-D", str(data), "-A", "trust", "-U", USER)
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.folder}'\n"
                "wal_level = replica\nmax_wal_senders = 5\nhot_standby = on\n"
                "max_connections = 200\n"
                "fsync = off\n"  # one machine, no power loss under test: only speed changes
            )
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        self.start("primary")
        self.psql("primary", "CREATE DATABASE berth")

    def _make_standby(self, name: str = "standby", of: str = "primary") -> None:
        _as_postgres(
            str(BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.ports[of]),
            "-D", str(self.data[name]), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        self.start(name)

    def rejoin(self, name: str) -> None:
        """Make server `name` (a lost primary) a standby of the other again: its data is
        replaced by a base backup of the other (as a failover manager's rewind would)."""
        other = next(n for n in self.ports if n != name)
        self.stop(name)
        _as_postgres("rm", "-rf", str(self.data[name]))
        self._make_standby(name, of=other)

    def start(self, name: str) -> None:
        port = self.ports[name]
        _as_postgres(
            str(BIN / "pg_ctl"), "-D", str(self.data[name]), "-l", str(self.folder / f"{name}.log"),
            "-o", f"-p {port}", "-w", "-t", str(int(START_TIMEOUT_S)), "start",
        )  # fmt: skip

    def stop(self, name: str, mode: str = "immediate") -> None:
        _as_postgres(
            str(BIN / "pg_ctl"), "-D", str(self.data[name]), "-m", mode, "-w", "stop",
            check=False,
        )  # fmt: skip

    def promote(self, name: str = "standby") -> float:
        """Promote `name`; the seconds until it accepts writes."""
        started = time.monotonic()
        _as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data[name]), "-w", "promote")
        return time.monotonic() - started

    def psql(self, name: str, statement: str) -> str:
        """One statement on server `name` (database `postgres`), its unaligned output."""
        answer = _as_postgres(
            str(BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.ports[name]), "-d", "postgres",
            "-At", "-c", statement,
        )  # fmt: skip
        return answer.stdout.strip()

    def in_recovery(self, name: str) -> bool:
        return self.psql(name, "SELECT pg_is_in_recovery()") == "t"

    def close(self) -> None:
        for name in self.ports:
            if (self.data[name] / "postmaster.pid").exists():
                self.stop(name)
        shutil.rmtree(self.folder, ignore_errors=True)
