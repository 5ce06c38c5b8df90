"""Real HTTP load tools from Debian (`wrk`, `hey`), run against a loopback address and read
back as one typed report.

Used by `berth bench run clients` (`controller.bench.clients`). Every run is bounded by
its duration (the tool stops itself; the process is killed 30 s past it) and sends only
to the loopback address it is given, with a Host header naming a route. `wrk` keeps its
connections alive and never resends; `hey -disable-keepalive` opens a connection per
request: between them, the clients a proxy must not fail. Both wait `ANSWER_TIMEOUT_S` for
an answer (hey's own default is 20 s; wrk's 2 s would count as failed a request the test
app itself answers late: busybox httpd answers about 1% of requests after ~1 s even
straight from its published port, idle); the slowest answer is reported beside.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

_WRK_TOTAL = re.compile(r"(\d+) requests in ")
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_WRK_LATENCY = re.compile(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)\b")
_HEY_SLOWEST = re.compile(r"Slowest:\s+([\d.]+) secs")
ANSWER_TIMEOUT_S = 10
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
_HEY_STATUS = re.compile(r"\[(\d{3})\]\s+(\d+) responses")
_HEY_ERROR = re.compile(r"\[(\d+)\]\s+(.*)")


@dataclass(frozen=True)
class LoadReport:
    """What a load tool saw: requests answered, connection-level errors, non-2xx answers."""

    tool: str
    requests: int
    errors: int
    non_2xx: int
    detail: str = ""
    slowest_s: float | None = None  # the slowest answer

    @property
    def failed(self) -> int:
        return self.errors + self.non_2xx


def available() -> bool:
    return shutil.which("wrk") is not None and shutil.which("hey") is not None


def wrk(address: str, host: str, connections: int, seconds: int) -> LoadReport:
    """`wrk` with `connections` kept-alive connections for `seconds`."""
    out = _run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            f"--timeout={ANSWER_TIMEOUT_S}s",
            "-H",
            f"Host: {host}",
            f"http://{address}/",
        ],
        seconds,
    )
    total = _WRK_TOTAL.search(out)
    socket = _WRK_SOCKET.search(out)
    non_2xx = _WRK_NON_2XX.search(out)
    errors = sum(int(n) for n in socket.groups()) if socket else 0
    latency = _WRK_LATENCY.search(out)
    return LoadReport(
        f"wrk, {connections} keep-alive connections",
        int(total.group(1)) if total else 0,
        errors,
        int(non_2xx.group(1)) if non_2xx else 0,
        socket.group(0) if socket else "",
        float(latency.group(1)) * _UNITS[latency.group(2)] if latency else None,
    )


def hey(address: str, host: str, workers: int, seconds: int) -> LoadReport:
    """`hey -disable-keepalive`: a new connection for every request, `workers` at once."""
    out = _run(
        [
            "hey",
            "-disable-keepalive",
            "-z",
            f"{seconds}s",
            "-c",
            str(workers),
            "-t",
            str(ANSWER_TIMEOUT_S),
            "-host",
            host,
            f"http://{address}/",
        ],
        seconds,
    )
    statuses = {int(code): int(n) for code, n in _HEY_STATUS.findall(out)}
    errors_part = out.split("Error distribution:", 1)[1] if "Error distribution:" in out else ""
    errors = [(int(n), text) for n, text in _HEY_ERROR.findall(errors_part)]
    answered = sum(statuses.values())
    error_count = sum(n for n, _ in errors)
    slowest = _HEY_SLOWEST.search(out)
    return LoadReport(
        f"hey, {workers} workers, no keep-alive",
        answered + error_count,
        error_count,
        sum(n for code, n in statuses.items() if not 200 <= code < 300),
        "; ".join(text[:120] for _, text in errors[:3]),
        float(slowest.group(1)) if slowest else None,
    )


def _run(argv: list[str], seconds: int) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    return done.stdout + done.stderr
