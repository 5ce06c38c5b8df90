"""A private HAProxy, for the tests and the benchmarks that route traffic through a real proxy.

Used by tests/integration (routes, rollouts) and `berth bench run rollout|clients`. Never
the machine's own proxy: its admin socket and its HTTP listener are its own (a socket file
and loopback ports for HTTP and HTTPS), its configuration and maps in a temporary folder, written by
`controller.policy.haproxy.haproxy_config` as `berth proxy-config` writes the real one. It
starts with empty maps and no servers; Berth programs the rest. `restart` kills it and
starts it empty again, as a crashed or wiped proxy would come back.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from controller.gateways.processes import free_port
from controller.gateways.tls_material import default_certificate
from controller.policy.haproxy import (
    CERTIFICATE_LIST,
    DEFAULT_CERTIFICATE,
    MAPS,
    haproxy_config,
)

POOL_SIZE = 32


def write_configuration(
    folder: Path, http_listen: str, https_listen: str, admin_url: str, pool_size: int
) -> str:
    """The files HAProxy's configuration names, made in `folder` if missing (empty maps and
    certificate list, a self-signed default certificate), and the configuration's text.
    Used here and by `berth proxy-config`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*MAPS, CERTIFICATE_LIST):
        (folder / name).touch()
    default = folder / DEFAULT_CERTIFICATE
    if https_listen and not default.exists():
        default.touch(mode=0o600)
        default.write_text(default_certificate())
    return haproxy_config(http_listen, admin_url, str(folder), pool_size, https_listen)


class PrivateHaproxy:
    def __init__(self, pool_size: int = POOL_SIZE) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="bh", dir="/tmp"))
        self.http_port = free_port()
        self.http_addr = f"127.0.0.1:{self.http_port}"
        self.https_port = free_port()
        self.https_addr = f"127.0.0.1:{self.https_port}"
        self.socket_path = self.folder / "admin.sock"
        self.admin_url = f"unix://{self.socket_path}"
        self.log_path = self.folder / "haproxy.log"
        self.pool_size = pool_size
        self.process: subprocess.Popen[bytes] | None = None
        try:
            self.start()
        except BaseException:
            self.close()
            raise

    def start(self) -> None:
        for name in (*MAPS, CERTIFICATE_LIST):  # empty again, as a wiped proxy comes back
            (self.folder / name).write_text("")
        config = self.folder / "haproxy.cfg"
        config.write_text(
            write_configuration(
                self.folder, self.http_addr, self.https_addr, self.admin_url, self.pool_size
            )
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["haproxy", "-db", "-f", str(config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with socket.socket(socket.AF_UNIX) as admin:
                    admin.connect(str(self.socket_path))
                with socket.create_connection(("127.0.0.1", self.http_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"haproxy did not come up; see {self.log_path}")

    def request_log(self, most: int = 40) -> list[str]:
        """Request lines HAProxy logged (only requests that went wrong or were retried:
        `option dontlog-normal`), without its own notices: the failed ones first (a status
        other than 2xx, or a termination state other than `----`), then those answered
        after a retry, at most `most`, each group in the order logged."""
        if not self.log_path.exists():
            return []
        lines = self.log_path.read_text(errors="replace").splitlines()
        requests = [line for line in lines if line[:1].isdigit()]
        answered = [line for line in requests if re.search(r" 2\d\d \d+ ---- ", line)]
        failed = [line for line in requests if line not in answered]
        return (failed + answered)[:most]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None
        self.socket_path.unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
