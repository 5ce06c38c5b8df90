"""Running a build's external programs (`git`, `docker build`): output line by line, and a
kill that really stops them.

Used by the git gateway (`controller.gateways.git_source`) and the Docker build gateway
(`controller.gateways.docker_builds`). Each program runs in its own process group, so a
cancel (or a timeout) kills it with everything it started, within `KILL_GRACE_S` of the
request; and it dies with the daemon (PR_SET_PDEATHSIG): a Berth killed mid-build leaves
no `docker build` running, whose closed connection makes the engine stop the build too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

KILL_GRACE_S = 1.0  # SIGTERM first (docker build cancels cleanly), SIGKILL after this
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    cancelled: bool
    timed_out: bool
    tail: list[str]  # the last lines of output, both streams


def run_command(
    args: Sequence[str],
    on_line: Callable[[str, str], None],
    cancelled: threading.Event,
    timeout_s: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    tail_lines: int = 20,
) -> CommandResult:
    """Run `args`, passing each output line to `on_line(stream, line)`, until it exits,
    `cancelled` is set or `timeout_s` passes (then its process group is killed)."""
    process = subprocess.Popen(
        list(args),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    tail: list[str] = []
    lock = threading.Lock()

    def pump(stream_name: str, stream: object) -> None:
        assert hasattr(stream, "readline")
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with lock:
                tail.append(line)
                del tail[:-tail_lines]
            on_line(stream_name, line)

    readers = [
        threading.Thread(target=pump, args=("stdout", process.stdout), daemon=True),
        threading.Thread(target=pump, args=("stderr", process.stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()
    stopped_by: list[str] = []
    finished = threading.Event()

    def watch() -> None:  # kills on cancel; the caller waits on the process itself
        while not finished.is_set():
            if cancelled.wait(0.05) and not finished.is_set():
                stopped_by.append("cancelled")
                _kill_group(process)
                return

    threading.Thread(target=watch, daemon=True).start()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        stopped_by.append("timeout")
        _kill_group(process)
    finally:
        finished.set()
    process.wait()
    for reader in readers:
        reader.join(timeout=2.0)
    return CommandResult(
        process.returncode, "cancelled" in stopped_by, "timeout" in stopped_by, list(tail)
    )


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the group, SIGKILL it if still there after KILL_GRACE_S."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
