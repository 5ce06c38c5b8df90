"""CPU seconds spent by process over one side of a benchmark pair (`berth bench run cold`).

Called by `controller.bench.cold`. On a machine the engine keeps busy, every CPU-second
Berth or Postgres spends is wall time the engine does not get, so beside each pair's
times the benchmark prints who spent the CPU: the whole machine (every core, user and
system: the engine's runc, shims and kernel work show only there), the daemon's process,
and every process named `postgres`, `dockerd` or `containerd`, summed over those alive at
each sample (one that ends in between is missed). Read from /proc (Linux).
"""

from __future__ import annotations

import os
from pathlib import Path

NAMED = ("postgres", "dockerd", "containerd")
_TICKS = os.sysconf("SC_CLK_TCK")


def _process_seconds(pid: int | str) -> float:
    """User + system CPU seconds of one process so far (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after the command, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def machine_ticks() -> tuple[int, int]:
    """All and idle CPU time of the machine so far, every core (/proc/stat's first line,
    in ticks; idle counts iowait). Also `harness.quiet_machine`'s measure."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    return sum(fields), fields[3] + fields[4]


def _machine_seconds() -> float:
    """Busy CPU seconds of the machine so far, every core: all but idle and iowait."""
    total, idle = machine_ticks()
    return (total - idle) / _TICKS


def sample(daemon_pid: int) -> dict[str, float]:
    """CPU seconds so far: {"machine": ..., "berth": ..., "postgres": ..., ...}."""
    found = dict.fromkeys(NAMED, 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            continue
        if name in found:
            found[name] += _process_seconds(entry.name)
    return {"machine": _machine_seconds(), "berth": _process_seconds(daemon_pid), **found}


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds spent between two samples, by the same keys."""
    return {key: after[key] - before.get(key, 0.0) for key in after}


def describe(seconds: dict[str, float]) -> str:
    return " ".join(f"{key} {value:.1f}" for key, value in seconds.items())
