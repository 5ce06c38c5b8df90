"""A private Caddy, for the tests and the benchmarks that route traffic through a real proxy.

Used by tests/integration (routes, rollouts) and `berth bench run rollout`. Never the
machine's own proxy: its admin API and its HTTP listener on loopback ports of its own,
its data and config directories in a temporary folder. It starts with an empty
configuration (only its admin listener); Berth programs the rest. `restart` stops it and
starts it empty again, as a crashed or wiped proxy would come back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from controller.gateways.processes import free_port


class PrivateCaddy:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="bc", dir="/tmp"))
        self.admin_port = free_port()
        self.http_port = free_port()
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self.http_addr = f"127.0.0.1:{self.http_port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        config = self.folder / "empty.json"
        config.write_text(json.dumps({"admin": {"listen": f"127.0.0.1:{self.admin_port}"}}))
        environment = {
            **os.environ,
            "XDG_DATA_HOME": str(self.folder / "data"),
            "XDG_CONFIG_HOME": str(self.folder / "config"),
            "HOME": str(self.folder),
        }
        with (self.folder / "caddy.log").open("ab") as log:
            self.process = subprocess.Popen(
                ["caddy", "run", "--config", str(config)], stdout=log, stderr=log, env=environment
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.admin_url}/config/", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"caddy did not come up; see {self.folder / 'caddy.log'}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
