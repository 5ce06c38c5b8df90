"""A private Docker engine, for the tests and the benchmark that stop and restart the engine.

Used by tests/integration/test_faults.py and `berth bench run chaos`. Never the machine's
main engine: its own socket, data root, exec root (so its own
containerd), pidfile and a bridge this helper creates (`--bridge NAME`, never `none`, which
would delete the host's docker0), with `--iptables=false`. Images are copied from the main
engine with `docker save | docker load`. Everything it made is removed by `close`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import docker


def await_engine(
    client: Callable[[], docker.APIClient],
    process: subprocess.Popen[bytes],
    log_tail: Callable[[], str],
    timeout_s: float = 60.0,
) -> float:
    """Wait until a dockerd just started answers; the time.time() at which it did."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            answering = client()
            answering.ping()
            answering.close()
            return time.time()
        except Exception:
            if process.poll() is not None:
                raise RuntimeError(log_tail()) from None
            time.sleep(0.1)
    raise RuntimeError(f"dockerd did not answer: {log_tail()}")


class PrivateEngine:
    def __init__(self, images: tuple[str, ...]) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="bd", dir="/tmp"))  # short: a socket
        self.bridge = f"bt{uuid.uuid4().hex[:8]}"
        self.socket = self.folder / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.process: subprocess.Popen[bytes] | None = None
        subnet = 200 + int(uuid.uuid4().hex[:2], 16) % 50
        self._run("ip", "link", "add", self.bridge, "type", "bridge")
        self._run("ip", "addr", "add", f"10.{subnet}.77.1/24", "dev", self.bridge)
        self._run("ip", "link", "set", self.bridge, "up")
        self.start()
        main = docker.APIClient()
        for image in images:
            saved = b"".join(main.get_image(image))
            self.client().load_image(saved)
        main.close()

    @staticmethod
    def _run(*argv: str) -> None:
        subprocess.run(argv, check=True, capture_output=True, timeout=30)

    def client(self) -> docker.APIClient:
        return docker.APIClient(base_url=self.url, version="auto", timeout=30)

    def running(self, cluster: str) -> int:
        """Running containers of Berth `cluster` on this engine."""
        client = self.client()
        try:
            found = client.containers(filters={"label": [f"io.berth.cluster={cluster}"]})
            return len(found)
        finally:
            client.close()

    def start(self) -> float:
        """Start dockerd; return the time.time() at which it first answered."""
        log = (self.folder / "dockerd.log").open("ab")
        self.process = subprocess.Popen(
            [
                "dockerd",
                "--host",
                self.url,
                "--data-root",
                str(self.folder / "data"),
                "--exec-root",
                str(self.folder / "exec"),
                "--pidfile",
                str(self.folder / "docker.pid"),
                "--bridge",
                self.bridge,
                "--iptables=false",
                "--ip-masq=false",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        return await_engine(self.client, self.process, self.log_tail)

    def stop(self) -> None:
        """Stop dockerd as an operator would (SIGTERM), waiting for it to exit."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)
        self.process = None

    def log_tail(self) -> str:
        path = self.folder / "dockerd.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                client = self.client()
                for container in client.containers(all=True, quiet=True):
                    client.remove_container(container["Id"], force=True)
                client.close()
            except Exception:
                pass
            self.stop()
        subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True, timeout=30)
        subprocess.run(["umount", "-R", str(self.folder / "exec")], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def environment(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.url}
