"""`berth bench run chaos`: an operator's bad day, measured on this machine.

Called by `controller.bench.runner`. Four scenarios, each with real processes:
- engine: a private Docker engine (never the machine's main one) stopped and started under
  N deployments: time from the engine answering to every replica running, deployments left
  failed, restarts counted;
- freezes: SIGSTOP of the leader of three `berth run` replicas for 10 s while deployments
  converge: freeze -> the new leader's first Docker call, calls of the frozen term after it;
- postgres: its Postgres stopped and started: probe answer times during the outage, and
  Postgres accepting -> a leader again;
- kills: N deployments converging while the leader is SIGKILLed twice: duplicates, orphans
  and unresolved intents once converged.
Every container made is removed (each run has its own `io.berth.cluster`).
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from controller.bench.harness import BENCH_IMAGE, Environment, percentile, poll
from controller.gateways.engines import PrivateEngine
from controller.gateways.processes import free_port, spawn_replica
from controller.model.errors import BerthError

FREEZE_S = 10.0


@dataclass
class ChaosOptions:
    engine_deployments: int = 20
    freezes: int = 5
    freeze_deployments: int = 20
    probes: int = 20
    kill_deployments: int = 300
    kills: int = 2

    @classmethod
    def smoke(cls) -> ChaosOptions:
        return cls(2, 1, 2, 3, 6, 1)


@dataclass
class Cluster:
    """`berth run` replicas of one benchmark environment."""

    bench: Environment
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[int, int] = field(default_factory=dict)  # pid -> HTTP port

    def start(self) -> subprocess.Popen[bytes]:
        port = free_port()
        process = spawn_replica(
            self.bench.url, self.bench.cluster, port, self.bench.folder / "berth.log", **self.env
        )
        self.bench.processes.append(process)
        self.ports[process.pid] = port
        return process

    def leader(self) -> tuple[int, int] | None:
        try:
            rows = self.bench.sql(
                "SELECT term, holder_pid FROM berth_leader WHERE cluster = %s",
                [self.bench.cluster],
            )
        except BerthError:
            return None
        return (int(rows[0]["term"]), int(rows[0]["holder_pid"])) if rows else None

    def process(self, pid: int) -> subprocess.Popen[bytes]:
        return next(p for p in self.bench.processes if p.pid == pid)

    def insert(self, names: list[str], replicas: int | None = None) -> None:
        self.bench.sql(
            "INSERT INTO deployments (name, image, replicas) "
            "SELECT n, %s, coalesce(%s, 1 + (row_number() OVER ()) %% 2) FROM unnest(%s::text[]) n",
            [BENCH_IMAGE, replicas, names],
        )

    def calls(self, after_term: int) -> list[tuple[int, float]]:
        rows = self.bench.sql(
            "SELECT term, extract(epoch FROM called_at)::float8 AS at FROM berth_mutations "
            "WHERE cluster = %s AND term >= %s AND called_at IS NOT NULL",
            [self.bench.cluster, after_term],
        )
        return [(int(r["term"]), float(r["at"])) for r in rows]


def engine_restart(deployments: int) -> list[str]:
    engine = PrivateEngine((BENCH_IMAGE,))
    bench = Environment(None)
    try:
        cluster = Cluster(bench, {"DOCKER_HOST": engine.url})
        cluster.start()
        poll(cluster.leader, timeout_s=60, interval_s=0.05)
        names = [f"eng-{i:03d}" for i in range(deployments)]
        cluster.insert(names)
        poll(lambda: bench.converged(names), timeout_s=300, interval_s=0.1)
        replicas = engine.running(bench.cluster)
        engine.stop()
        time.sleep(2.0)  # down for a while: passes fail meanwhile
        answered = engine.start()
        poll(
            lambda: bench.converged(names) and engine.running(bench.cluster) == replicas,
            timeout_s=300,
            interval_s=0.1,
        )
        back_s = time.time() - answered
        rows = bench.sql(
            "SELECT count(*) FILTER (WHERE phase = 'failed') AS failed, "
            "sum(restart_count) AS restarts FROM deployment_status"
        )
        return [
            f"engine restart, {deployments} deployments ({replicas} replicas): all running "
            f"{back_s:.2f}s after the engine answered (goal <= 15 s)",
            f"  deployments left failed: {rows[0]['failed']} (goal 0); "
            f"restart counts: {rows[0]['restarts'] or 0} (goal: unchanged, 0)",
        ]
    finally:
        bench.close()
        engine.close()


def freezes(trials: int, deployments: int, silence_s: float) -> list[str]:
    bench = Environment(None)
    cluster = Cluster(bench)
    to_first: list[float] = []
    late_calls = 0
    try:
        for _ in range(3):
            cluster.start()
        for trial in range(trials):
            term, pid = poll(cluster.leader, timeout_s=60, interval_s=0.05)
            names = [f"fz{trial}-{i:03d}" for i in range(deployments)]
            cluster.insert(names)
            poll(lambda term=term: cluster.calls(term), timeout_s=60)  # type: ignore[misc]
            victim = cluster.process(pid)
            victim.send_signal(signal.SIGSTOP)
            frozen_at = time.time()
            try:
                poll(
                    lambda term=term: any(t > term for t, _ in cluster.calls(term)),  # type: ignore[misc]
                    timeout_s=FREEZE_S,
                    interval_s=0.02,
                )
                first = min(at for t, at in cluster.calls(term) if t > term)
                to_first.append(first - frozen_at)
            except TimeoutError:
                to_first.append(float("inf"))
            time.sleep(max(0.0, frozen_at + FREEZE_S - time.time()))
            victim.send_signal(signal.SIGCONT)
            poll(lambda names=names: bench.converged(names), timeout_s=300, interval_s=0.1)  # type: ignore[misc]
            calls = cluster.calls(term)
            newer = [at for t, at in calls if t > term]
            late_calls += sum(1 for t, at in calls if t == term and newer and at > min(newer))
        return [
            f"{trials} freezes of {FREEZE_S:g}s, {deployments} deployments converging each: "
            f"freeze -> new leader's first call p50 {percentile(to_first, 0.5):.2f}s, "
            f"p99 {percentile(to_first, 0.99):.2f}s (goal <= silence timeout + 2 s = "
            f"{silence_s + 2:g}s)",
            f"  each trial: {', '.join(f'{s:.2f}s' for s in to_first)}; calls of a frozen term "
            f"after its successor's first: {late_calls} (goal 0); converged every time",
        ]
    finally:
        for process in bench.processes:
            process.send_signal(signal.SIGCONT)
        bench.close()


def _answer_s(url: str) -> float:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
    except urllib.error.HTTPError as error:
        error.read()
    return time.monotonic() - started


def postgres_restart(probes: int) -> list[str]:
    bench = Environment(None)
    cluster = Cluster(bench)
    server: Any = bench.server
    try:
        for _ in range(2):
            cluster.start()
        term, pid = poll(cluster.leader, timeout_s=60, interval_s=0.05)
        port = cluster.ports[pid]
        bench.database.close()
        server.stop()
        answers = [
            _answer_s(f"http://127.0.0.1:{port}/{path}")
            for _ in range(probes)
            for path in ("readyz", "status")
        ]
        server.start()
        accepting = time.monotonic()
        bench.reconnect()
        poll(
            lambda: (found := cluster.leader()) is not None and found[0] > term,
            timeout_s=60,
            interval_s=0.02,
        )
        back_s = time.monotonic() - accepting
        return [
            f"probes during a Postgres outage ({len(answers)} answers): p50 "
            f"{percentile(answers, 0.5) * 1000:.0f} ms, p99 {percentile(answers, 0.99) * 1000:.0f}"
            " ms (goal p99 < 1 s)",
            f"Postgres accepting again -> a leader: {back_s:.2f}s (goal <= 2 s)",
        ]
    finally:
        bench.close()


def kills(deployments: int, count: int) -> list[str]:
    bench = Environment(None)
    cluster = Cluster(bench)
    try:
        for _ in range(3):
            cluster.start()
        poll(cluster.leader, timeout_s=60, interval_s=0.05)
        names = [f"kl-{i:03d}" for i in range(deployments)]
        cluster.insert(names, replicas=1)
        last_term = 0

        def newer_leader() -> tuple[int, int] | None:
            found = cluster.leader()
            return found if found and found[0] > last_term else None

        for kill in range(count):
            last_term, pid = poll(newer_leader, timeout_s=60, interval_s=0.05)
            target = (kill + 1) * deployments // (count + 2)  # kill while converging
            poll(lambda: bench.running() >= target, timeout_s=600, interval_s=0.05)  # noqa: B023
            victim = cluster.process(pid)
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            cluster.start()
        poll(lambda: bench.converged(names), timeout_s=900, interval_s=0.2)
        slots = Counter((c.deployment, c.replica) for c in bench.containers())
        duplicates = sum(n - 1 for n in slots.values() if n > 1)
        orphans = sum(1 for deployment, _ in slots if deployment not in set(names))
        unresolved = bench.sql(
            "SELECT count(*) AS n FROM berth_mutations "
            "WHERE cluster = %s AND outcome IS NULL AND resolution IS NULL",
            [bench.cluster],
        )[0]["n"]
        resolved = bench.sql(
            "SELECT resolution, count(*) AS n FROM berth_mutations "
            "WHERE cluster = %s AND resolution IS NOT NULL GROUP BY resolution",
            [bench.cluster],
        )
        found = ", ".join(f"{r['resolution']} {r['n']}" for r in resolved) or "none"
        return [
            f"{deployments} deployments, {count} leader kills while converging: duplicates "
            f"{duplicates}, orphans {orphans}, unresolved intents {unresolved} (goal 0 each)",
            f"  intents the killed leaders left, resolved by their successors: {found}",
        ]
    finally:
        bench.close()


def run(options: ChaosOptions, silence_s: float = 4.0) -> list[str]:
    lines = engine_restart(options.engine_deployments)
    lines += freezes(options.freezes, options.freeze_deployments, silence_s)
    lines += postgres_restart(options.probes)
    lines += kills(options.kill_deployments, options.kills)
    return lines
