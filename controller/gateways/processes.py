"""Starting `berth run` processes: the HA tests and the benchmarks run real replicas.

Used by `controller.bench` and tests/integration (which may not import the benchmarks).
Ports are found on loopback only.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def spawn_replica(
    database_url: str, cluster: str, http_port: int, log_path: Path, **env: str
) -> subprocess.Popen[bytes]:
    """One `berth run` process with settings sized for tests and benchmarks."""
    environment = {
        **os.environ,
        "BERTH_DATABASE_URL": database_url,
        "BERTH_CLUSTER": cluster,
        "BERTH_HTTP_ADDR": f"127.0.0.1:{http_port}",
        "BERTH_LOG_FORMAT": "json",
        "BERTH_STOP_TIMEOUT_S": "1",
        "BERTH_RESYNC_INTERVAL_S": "5",
        "BERTH_CONCURRENCY": "4",
        "BERTH_RETRY_BASE_S": "0.5",
        "BERTH_RETRY_MAX_S": "5",
        "BERTH_HEALTH_POLL_INTERVAL_S": "0.5",
        "BERTH_PROXY_ADMIN_URL": "",  # the machine's proxy is not theirs: name one to use it
        "BERTH_API_ADDR": "",  # nor is the API's default port: name one to serve it
        **env,
    }
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "controller.app.cli", "run"],
            env=environment,
            stdout=log_file,
            stderr=log_file,
        )


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Profiler:
    """py-spy sampling a running process (`berth bench run cold --profile DIR`): on-CPU
    samples only (`--gil`), 100 a second, as collapsed stacks (flamegraph.pl reads them)."""

    def __init__(self, pid: int, output: Path) -> None:
        spy = Path(sys.executable).with_name("py-spy")
        self.output = output
        self._process = subprocess.Popen(
            [str(spy), "record", "--pid", str(pid), "--output", str(output), "--format",
             "raw", "--rate", "100", "--gil", "--threads"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> Path:
        """End the recording (py-spy writes its file on SIGINT); the file."""
        self._process.send_signal(2)
        self._process.wait(60)
        return self.output
