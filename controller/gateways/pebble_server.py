"""A private ACME server: Debian's `pebble` with its mock DNS (`pebble-challtestsrv`), on
loopback ports of its own, for the HTTPS tests and benchmarks.

Used by tests/integration (TLS routes). Every name resolves to 127.0.0.1 through the mock
DNS, and pebble validates HTTP-01 challenges by asking the given proxy's HTTP port, as a
real ACME server asks port 80: the challenge really goes through Berth's proxy. Its own
HTTPS listener has a self-signed certificate written to its folder (`ca_bundle`: what
Berth's ACME client trusts); `root_pem` is the root that signs the certificates it issues.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from controller.gateways.processes import free_port
from controller.gateways.tls_material import self_signed


class PrivatePebble:
    def __init__(self, http_port: int, tls_port: int) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="bp", dir="/tmp"))
        self.port, self.management_port, self.dns_port = free_port(), free_port(), free_port()
        self.directory_url = f"https://127.0.0.1:{self.port}/dir"
        self.ca_bundle = str(self.folder / "pebble.pem")
        self.processes: list[subprocess.Popen[bytes]] = []
        try:
            self._start(http_port, tls_port)
        except BaseException:
            self.close()
            raise

    def _start(self, http_port: int, tls_port: int) -> None:
        certificate, key = self_signed(["localhost"], ips=("127.0.0.1",))
        Path(self.ca_bundle).write_text(certificate)
        (self.folder / "pebble.key").write_text(key)
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": self.ca_bundle,
                "privateKey": str(self.folder / "pebble.key"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        (self.folder / "pebble.json").write_text(json.dumps(config))
        environment = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
        log = (self.folder / "pebble.log").open("ab")
        dns = f"127.0.0.1:{self.dns_port}"
        self.processes.append(
            subprocess.Popen(
                ["pebble-challtestsrv", "-dns01", dns, "-http01", "", "-https01", "",
                 "-tlsalpn01", "", "-management", f"127.0.0.1:{free_port()}",
                 "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
                stdout=log, stderr=log,
            )
        )  # fmt: skip
        self.processes.append(
            subprocess.Popen(
                ["pebble", "-config", str(self.folder / "pebble.json"), "-dnsserver", dns],
                stdout=log,
                stderr=log,
                env=environment,
            )
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.root_pem = self._get("/roots/0")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"pebble did not come up; see {self.folder / 'pebble.log'}")

    def _get(self, path: str) -> str:
        context = ssl.create_default_context(cafile=self.ca_bundle)
        url = f"https://127.0.0.1:{self.management_port}{path}"
        with urllib.request.urlopen(url, timeout=5, context=context) as answer:
            return str(answer.read().decode())

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)
