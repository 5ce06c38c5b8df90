"""Berth and a Postgres primary with a streaming standby (Debian's Postgres 15 binaries, both
on loopback; `controller.gateways.postgres_pair`): a command pointed at the standby fails
naming it; a daemon reaching only the standby is not ready, says which server, and sets
`berth_database_read_only`; with both servers in a libpq multi-host URL and
`target_session_attrs=read-write`, commands and the daemon reach the primary, and follow the
standby once it is promoted."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from controller.app.daemon import Daemon
from controller.gateways import postgres_pair
from controller.gateways.postgres_pair import PostgresPair
from tests.integration.conftest import Containers, Sql, berth, report, settings_for, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not postgres_pair.available(), reason="postgresql-15: setup-host.sh"),
]


@pytest.fixture(scope="module")
def pair() -> Iterator[PostgresPair]:
    made = PostgresPair()
    yield made
    made.close()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def test_a_command_pointed_at_a_standby_fails_naming_it(pair: PostgresPair, cluster: str) -> None:
    migrated = berth(pair.url("primary"), "migrate", cluster=cluster)
    assert migrated.returncode == 0, migrated.stderr
    refused = berth(pair.url("standby"), "get", cluster=cluster)
    assert refused.returncode != 0
    where = f"127.0.0.1:{pair.ports['standby']}"
    assert f"the database at {where} is a standby in recovery" in refused.stderr, refused.stderr
    assert "target_session_attrs=read-write" in refused.stderr
    # Both servers named, the standby first: libpq finds the primary.
    listed = berth(pair.url("standby", "primary"), "get", cluster=cluster)
    assert listed.returncode == 0, listed.stderr


def test_a_daemon_reaching_only_the_standby_is_not_ready_and_says_which(
    pair: PostgresPair, cluster: str
) -> None:
    url = pair.url("standby")
    daemon = Daemon(settings_for(cluster, url, migrate_on_start=False), url)
    daemon.start()
    try:
        base = f"http://127.0.0.1:{daemon.http.port}"
        _, reason = wait_for(
            lambda: (answer := get(f"{base}/readyz"))[0] == 503 and answer,
            timeout_s=30,
            what="not ready",
        )
        assert f"127.0.0.1:{pair.ports['standby']} is a standby in recovery" in reason, reason
        metrics = wait_for(
            lambda: "berth_database_read_only 1.0" in (m := get(f"{base}/metrics")[1]) and m,
            timeout_s=30,
            what="the read-only gauge",
        )
        assert metrics
        assert not daemon.leadership.is_leader, "no leader on a standby"
    finally:
        daemon.stop()


def test_a_failover_to_the_promoted_standby_is_followed(
    pair: PostgresPair, cluster: str, containers: Containers, capsys: pytest.CaptureFixture[str]
) -> None:
    """Last in the module: the old primary stays down afterwards. Ten deployments converge
    on the primary; the primary stops (immediate) and the standby is promoted; the same
    daemon, on a URL naming both servers, reconnects to the new primary, leads again, and
    converges two more deployments, with no duplicate container."""
    url = pair.url("primary", "standby")
    sql = Sql(url)
    daemon = Daemon(settings_for(cluster, url), url)
    daemon.start()
    try:
        names = [f"db-{index}" for index in range(10)]
        for name in names:
            sql.insert(name)
        wait_for(lambda: all(sql.converged(n) for n in names), timeout_s=120, what="converged")
        wait_for(lambda: not pair.in_recovery("primary") and sql("SELECT 1"), what="primary")
        before_term = daemon.leadership.term
        pair.stop("primary")
        stopped = time.monotonic()
        promotion_s = pair.promote("standby")
        promoted = time.monotonic()
        wait_for(
            lambda: daemon.leadership.is_leader and daemon.leadership.term != before_term,
            timeout_s=60,
            interval_s=0.05,
            what="a leader again on the new primary",
        )
        leading_s = time.monotonic() - promoted
        for name in ("after-0", "after-1"):
            sql.insert(name)
        wait_for(
            lambda: all(sql.converged(n) for n in [*names, "after-0", "after-1"]),
            timeout_s=120,
            what="every deployment converged on the new primary",
        )
        report(
            capsys,
            f"failover: promotion {promotion_s:.2f}s; leader again {leading_s:.2f}s after it; "
            f"all 12 converged {time.monotonic() - stopped:.2f}s after the primary stopped",
        )
        for name in [*names, "after-0", "after-1"]:
            assert len(containers.find(name)) == 1, f"no duplicate of {name}"
    finally:
        daemon.stop()
