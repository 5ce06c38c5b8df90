"""The HTTP endpoint, and a real Prometheus scraping Berth while a replica crash-loops."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.app.daemon import Daemon
from controller.gateways.processes import free_port
from tests.integration.conftest import Sql, wait_for
from tests.unit.test_dashboard import REQUIRED_FAMILIES

pytestmark = pytest.mark.integration
ALERTS = Path(__file__).parents[2] / "deploy" / "prometheus" / "alerts.yml"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:  # not listening yet
        return 0, ""


def test_health_readiness_status_and_metrics(daemon: Daemon, sql: Sql) -> None:
    base = f"http://127.0.0.1:{daemon.http.port}"
    wait_for(lambda: daemon.leadership.is_leader, what="leader")
    assert get(f"{base}/healthz")[0] == 200
    assert get(f"{base}/readyz") == (200, "ok\n")
    # /status serves the last snapshot (refreshed in the background) with its age.
    status = wait_for(
        lambda: (s := json.loads(get(f"{base}/status")[1])) and s.get("leader") and s,
        what="a snapshot showing the leader",
    )
    assert status["node"]["role"] == "leader" and status["leader"]["term"] >= 1
    assert 0 <= status["snapshot_age_s"] < 30 and status["snapshot_error"] is None
    code, metrics = get(f"{base}/metrics")
    assert code == 200
    for family in REQUIRED_FAMILIES:
        assert (
            f"# TYPE {family}" in metrics or f"# TYPE {family.removesuffix('_total')}" in metrics
        ), family
    # Known label combinations exist from start-up, at zero.
    assert 'berth_container_restarts_total{reason="unhealthy"}' in metrics
    assert 'berth_actions_total{kind="restart",result="error"}' in metrics
    assert 'berth_deployments{phase="degraded"}' in metrics
    assert "deployment=" not in metrics, "deployment names are never labels"


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[Callable[[int], str]]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: deploy/setup-host.sh installs Debian's package"
    processes: list[subprocess.Popen[bytes]] = []

    def start(berth_port: int) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(ALERTS)],
                    "scrape_configs": [
                        {
                            "job_name": "berth",
                            "static_configs": [{"targets": [f"127.0.0.1:{berth_port}"]}],
                        }
                    ],
                }
            )
        )
        storage = Path(tempfile.mkdtemp(dir=tmp_path))
        log = (tmp_path / "prometheus.log").open("wb")
        processes.append(
            subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={storage}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=log,
            )
        )
        url = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: (
                get(f"{url}/-/ready")[0] == 200
                if processes[-1].poll() is None
                else pytest.fail((tmp_path / "prometheus.log").read_text()[-3000:])
            ),
            what="prometheus ready",
        )
        return url

    yield start
    for process in processes:
        process.terminate()
        process.wait(30)


def query(url: str, promql: str) -> list[dict[str, Any]]:
    body = json.loads(get(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")[1])
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_prometheus_sees_restarts_and_raises_the_crash_loop_alert(
    start_daemon: Callable[..., Daemon],
    sql: Sql,
    prometheus_server: Callable[[int], str],
) -> None:
    daemon = start_daemon(
        resync_interval_s=1.0,
        restart_backoff_initial_s=3.0,
        restart_backoff_max_s=10.0,
        recreate_after_restarts=100,
    )
    prometheus = prometheus_server(daemon.http.port)
    wait_for(lambda: query(prometheus, 'up{job="berth"} == 1'), what="berth scraped")
    sql.insert("looper", command=["sh", "-c", "echo starting; exit 2"])

    def crash_loop_alert() -> str | None:
        body = json.loads(get(f"{prometheus}/api/v1/alerts")[1])
        for alert in body["data"]["alerts"]:
            if alert["labels"]["alertname"] == "BerthCrashLooping":
                return str(alert["state"])
        return None

    state = wait_for(crash_loop_alert, timeout_s=90, what="BerthCrashLooping pending or firing")
    assert state in ("pending", "firing")
    wait_for(
        lambda: query(
            prometheus, 'sum(berth_container_restarts_total{job="berth",reason="exited"}) >= 2'
        ),
        what="two restarts counted in Prometheus",
    )
    # The resync's gauge and Prometheus's scrape each lag the phase by up to an interval.
    wait_for(
        lambda: query(prometheus, 'berth_deployments{job="berth",phase="degraded"} == 1'),
        what="the crash-looping deployment counted degraded in Prometheus",
    )
    assert query(prometheus, 'berth_leader{job="berth"} == 1')
    # No alert fires for things that are fine.
    body = json.loads(get(f"{prometheus}/api/v1/alerts")[1])
    names = {alert["labels"]["alertname"] for alert in body["data"]["alerts"]}
    assert not names & {"BerthDown", "BerthNoLeader", "BerthResyncStalled"}
