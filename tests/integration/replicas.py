"""Real `berth run` processes for the HA tests: start, find the leader, kill, pause."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.gateways.processes import free_port, spawn_replica
from tests.integration.conftest import Sql, wait_for


@dataclass
class Replica:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def status(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/status", timeout=2
            ) as answer:
                body: dict[str, Any] = json.load(answer)
                return body
        except OSError:
            return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class ReplicaSet:
    """Replicas of one cluster against one database; everything is killed at the end."""

    sql: Sql
    cluster: str
    folder: Path
    replicas: list[Replica] = field(default_factory=list)

    def start(self, **env_overrides: str) -> Replica:
        port = free_port()
        log_path = self.folder / f"berth-{len(self.replicas)}.log"
        process = spawn_replica(self.sql.url, self.cluster, port, log_path, **env_overrides)
        replica = Replica(process, port, log_path)
        self.replicas.append(replica)
        wait_for(lambda: replica.status() is not None or not replica.alive(), what="replica up")
        return replica

    def leader_row(self) -> dict[str, Any] | None:
        rows = self.sql("SELECT * FROM berth_leader WHERE cluster = %s", [self.cluster])
        return rows[0] if rows else None

    def leader(self) -> Replica | None:
        """The live replica that holds the current term (as Postgres says)."""
        row = self.leader_row()
        if row is None:
            return None
        for replica in self.replicas:
            if replica.alive() and replica.pid == row["holder_pid"]:
                return replica
        return None

    def wait_for_leader(self, other_than_term: int = 0, timeout_s: float = 30) -> Replica:
        def found() -> Replica | None:
            row = self.leader_row()
            if row is None or row["term"] <= other_than_term:
                return None
            return self.leader()

        replica: Replica = wait_for(found, timeout_s=timeout_s, interval_s=0.01, what="a leader")
        return replica

    def term(self) -> int:
        row = self.leader_row()
        return int(row["term"]) if row else 0

    def mutations(self) -> list[dict[str, Any]]:
        return self.sql(
            "SELECT * FROM berth_mutations WHERE cluster = %s ORDER BY id", [self.cluster]
        )

    def stop_all(self) -> None:
        for replica in self.replicas:
            if replica.alive():
                replica.process.send_signal(signal.SIGCONT)
                replica.process.kill()
            replica.process.wait(30)
