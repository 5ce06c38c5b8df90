"""Berth and a Postgres primary with a streaming standby (Debian's Postgres 15 binaries, both
on loopback; `controller.gateways.postgres_pair`): a command pointed at the standby fails
naming it; a daemon reaching only the standby is not ready, says which server, and sets
`berth_database_read_only`; with both servers in a libpq multi-host URL and
`target_session_attrs=read-write`, commands and the daemon reach the primary, and follow the
standby once it is promoted."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from controller.app.daemon import Daemon
from controller.gateways import postgres_pair
from controller.gateways.lock_session import LockSession
from controller.gateways.postgres import Database
from controller.gateways.postgres_pair import PostgresPair
from controller.model.errors import Deposed
from controller.model.phases import Phase
from controller.model.records import Fence
from tests.integration.conftest import (
    EXAMPLE_IMAGE,
    Containers,
    Sql,
    berth,
    report,
    settings_for,
    wait_for,
)
from tests.integration.contract.test_state_contract import status
from tests.integration.test_observability import get

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not postgres_pair.available(), reason="postgresql-15: setup-host.sh"),
]


# A cluster's intents left without an outcome and not resolved.
UNRESOLVED = (
    "SELECT id FROM berth_mutations WHERE cluster = %s AND outcome IS NULL AND resolution IS NULL"
)


def insert_converging(sql: Sql, prefix: str) -> list[str]:
    """Twenty deployments inserted at once; returns once three have converged (the rest
    are converging: the moment a failover is tested under)."""
    names = [f"{prefix}-{index}" for index in range(20)]
    sql(
        "INSERT INTO deployments (name, image) SELECT unnest(%s::text[]), %s",
        [names, EXAMPLE_IMAGE],
    )
    wait_for(
        lambda: sum(1 for n in names if sql.converged(n)) >= 3,
        interval_s=0.02,
        what="converging",
    )
    return names


@pytest.fixture(scope="module")
def pair() -> Iterator[PostgresPair]:
    made = PostgresPair()
    yield made
    made.close()


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


def test_a_failover_under_converging_deployments_is_followed(
    pair: PostgresPair, cluster: str, containers: Containers, capsys: pytest.CaptureFixture[str]
) -> None:
    """Last of the module's pair (its old primary stays down). Twenty deployments inserted at
    once; while they converge the primary stops (immediate) and the standby is promoted. The
    same daemon, on a URL naming both servers, leads again within the promotion + 2 s, and
    every deployment converges with one container each, none left unaccounted for, and every
    intent it finds without an outcome resolved."""
    url = pair.url("primary", "standby")
    sql = Sql(url)
    daemon = Daemon(settings_for(cluster, url), url)
    daemon.start()
    try:
        wait_for(lambda: daemon.leadership.is_leader, what="a leader")
        names = insert_converging(sql, "db")
        before_term = daemon.leadership.term
        pair.stop("primary")
        stopped = time.monotonic()
        promotion_s = pair.promote("standby")
        promoted = time.monotonic()
        wait_for(
            lambda: daemon.leadership.is_leader and daemon.leadership.term != before_term,
            timeout_s=60,
            interval_s=0.02,
            what="a leader again on the new primary",
        )
        leading_s = time.monotonic() - promoted
        for name in ("after-0", "after-1"):
            sql.insert(name)
        every = [*names, "after-0", "after-1"]
        wait_for(
            lambda: all(sql.converged(n) for n in every),
            timeout_s=180,
            what="every deployment converged on the new primary",
        )
        report(
            capsys,
            f"failover under 20 converging: promotion {promotion_s:.2f}s; leader again "
            f"{leading_s:.2f}s after it; all 22 converged {time.monotonic() - stopped:.2f}s "
            "after the primary stopped",
        )
        assert leading_s < 2.0, "a leader within the promotion + 2 s"
        found = containers.find()
        by_name = Counter(c["Labels"]["io.berth.deployment"] for c in found)
        assert by_name == Counter(every), f"one container each, nothing else: {by_name}"
        wait_for(lambda: not sql(UNRESOLVED, [cluster]), what="every intent resolved")
    finally:
        daemon.stop()


def test_a_term_the_standby_never_received_lets_no_two_leaders_act(cluster: str) -> None:
    """The hard case, on purpose: the standby stops hearing the primary, node B is granted
    term 2 on the primary alone and writes in it, the primary is lost, the standby (which
    last saw term 1) is promoted and grants term 2 again, to node C. The number is the same;
    the holder is not: B's next fenced write, which its pool now sends to the new primary,
    is refused (Deposed), C's is taken. So no intent, and hence no Docker call, of B's
    follows C's election."""
    pair = PostgresPair()  # its own: this test stops both servers in turn
    try:
        migrated = berth(pair.url("primary"), "migrate", cluster=cluster)
        assert migrated.returncode == 0, migrated.stderr
        both = pair.url("primary", "standby")
        Sql(both).insert("web")
        a = claim(both, cluster, "a")
        wait_for(lambda: standby_term(pair, cluster) == a, what="term 1 on the standby")
        pair.stop("standby", "fast")  # it hears nothing more from the primary
        b = claim(both, cluster, "b")
        assert b == a + 1
        database = Database(both, pool_size=2)
        try:
            fence_b = Fence(cluster, b, NODES["b"], lambda: None)
            database.status.record(fence_b, status("web", Phase.QUEUED), create_row=True)
            pair.stop("primary")  # lost, with term 2's claim and B's write
            pair.start("standby")
            pair.promote("standby")
            c = claim(both, cluster, "c")
            assert c == b, "the same term number, granted a second time"
            fence_c = Fence(cluster, c, NODES["c"], lambda: None)
            with pytest.raises(Deposed, match="not this node's"):
                database.status.record(fence_b, status("web", Phase.ACTIVE), create_row=True)
            database.status.record(fence_c, status("web", Phase.ACTIVE, ready=1), create_row=True)
            [row] = Sql(both)("SELECT phase, leader_term FROM deployment_status WHERE name = 'web'")
            assert (row["phase"], row["leader_term"]) == ("active", c)
        finally:
            database.close()
    finally:
        pair.close()


NODES = {name: str(uuid.uuid4()) for name in ("a", "b", "c")}


def claim(url: str, cluster: str, node: str) -> int:
    """Node `node` claims the next term as Berth's election does (its lock session)."""
    session = LockSession(url, f"berth-lock {cluster} {NODES[node]}", 4.0)
    try:
        return session.claim_term(cluster, NODES[node], "test", 1).term
    finally:
        session.close()


def standby_term(pair: PostgresPair, cluster: str) -> int | None:
    rows = Sql(pair.url("standby"))("SELECT term FROM berth_leader WHERE cluster = %s", [cluster])
    return int(rows[0]["term"]) if rows else None


def test_synchronous_acknowledged_writes_survive_a_failover_and_a_switchover_back(
    cluster: str, containers: Containers, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a synchronous standby a write acknowledged to the operator is on the standby's
    disk: the primary lost right after it, the promoted standby has it, and Berth converges
    it. Then the old primary rejoins as a standby and a planned switchover promotes it back
    while 20 deployments converge; the same daemon follows both times, leads again within
    the promotion + 2 s, every deployment converges with one container, and every intent
    is resolved."""
    pair = PostgresPair(synchronous=True)
    try:
        url = pair.url("primary", "standby")
        sql = Sql(url)
        daemon = Daemon(settings_for(cluster, url), url)
        daemon.start()
        try:
            for name in ("one", "two", "three"):
                sql.insert(name)
            wait_for(lambda: all(sql.converged(n) for n in ("one", "two", "three")), what="up")
            sql.insert("acknowledged")  # returned: on the synchronous standby's disk
            pair.stop("primary")
            pair.promote("standby")
            assert sql("SELECT name FROM deployments WHERE name = 'acknowledged'")
            wait_for(lambda: sql.converged("acknowledged"), timeout_s=60, what="converged")
            first_term = daemon.leadership.term

            pair.rejoin("primary")  # now a standby of the promoted one
            wait_for(lambda: pair.in_recovery("primary"), what="the old primary a standby")
            # The switchover back, under 20 converging deployments, as the failover was.
            converging = insert_converging(sql, "back")
            pair.stop("standby", "fast")  # a planned switchover: the current primary stops
            pair.promote("primary")
            promoted = time.monotonic()
            wait_for(
                lambda: daemon.leadership.is_leader and daemon.leadership.term != first_term,
                timeout_s=60,
                interval_s=0.02,
                what="a leader again after the switchover back",
            )
            leading_s = time.monotonic() - promoted
            sql.insert("after-switchover")
            names = ("one", "two", "three", "acknowledged", "after-switchover", *converging)
            wait_for(
                lambda: all(sql.converged(n) for n in names),
                timeout_s=180,
                what="every deployment converged after the switchover back",
            )
            report(capsys, f"switchover back under 20 converging: leader again {leading_s:.2f}s")
            assert leading_s < 2.0, "a leader within the promotion + 2 s"
            found = Counter(c["Labels"]["io.berth.deployment"] for c in containers.find())
            assert found == Counter(names), f"one container each, nothing else: {found}"
            wait_for(lambda: not sql(UNRESOLVED, [cluster]), what="every intent resolved")
        finally:
            daemon.stop()
    finally:
        pair.close()


def test_creation_records_lost_with_the_old_primary_are_written_again(
    cluster: str, containers: Containers, capsys: pytest.CaptureFixture[str]
) -> None:
    """The standby stops hearing the primary right after the operator's deployments reach
    it; Berth then converges them on the primary alone, so every creation record (and
    intent) is lost with it. Meanwhile someone copies one replica's labels onto a container
    of their own, with a made-up proof. After the promotion the same daemon keeps every one
    of its containers (the same ids), writes their records again with an event, and
    removes the look-alike without ever recording it."""
    pair = PostgresPair()  # its own: this test stops both servers in turn
    try:
        migrated = berth(pair.url("primary"), "migrate", cluster=cluster)
        assert migrated.returncode == 0, migrated.stderr
        url = pair.url("primary", "standby")
        sql = Sql(url)
        names = [f"kept-{index}" for index in range(6)]
        sql(
            "INSERT INTO deployments (name, image, replicas) SELECT unnest(%s::text[]), %s, 2",
            [names, EXAMPLE_IMAGE],
        )
        standby = Sql(pair.url("standby"))
        wait_for(
            lambda: standby("SELECT count(*) AS n FROM deployments")[0]["n"] == len(names),
            what="the deployments on the standby",
        )
        pair.stop("standby", "fast")  # it hears nothing more from the primary
        daemon = Daemon(settings_for(cluster, url), url)
        daemon.start()
        try:
            wait_for(lambda: all(sql.converged(n) for n in names), what="converged")
            ours = {c["Id"] for c in containers.find()}
            assert len(ours) == 2 * len(names)
            recorded = sql("SELECT container_id FROM berth_containers")
            assert {row["container_id"] for row in recorded} == ours
            pair.stop("primary")  # lost, with every creation record and intent
            model = containers.find(names[0])[0]["Labels"]
            forged = {**model, "io.berth.proof": "0" * 64}
            look_alike = containers.run_unmanaged(f"{cluster}-look-alike", forged)
            pair.start("standby")
            # Checked while it is still a standby, which nobody can write to: once promoted,
            # the daemon (its pool retries every 0.5 s) writes the records again at once.
            lost = standby("SELECT container_id FROM berth_containers")
            assert not lost, "the records are lost with the old primary"
            pair.promote("standby")
            promoted = time.monotonic()
            wait_for(
                lambda: len(sql("SELECT container_id FROM berth_containers")) == len(ours),
                timeout_s=60,
                what="the records written again",
            )
            wait_for(
                lambda: look_alike not in {c["Id"] for c in containers.find()},
                timeout_s=60,
                what="the look-alike removed",
            )
            wait_for(lambda: all(sql.converged(n) for n in names), what="converged again")
            report(
                capsys,
                f"{len(ours)} creation records written again "
                f"{time.monotonic() - promoted:.2f}s after the promotion",
            )
            assert {c["Id"] for c in containers.find()} == ours, "every one kept, none made"
            rows = sql("SELECT container_id FROM berth_containers")
            assert {row["container_id"] for row in rows} == ours, "the look-alike never"
            notes = sql(
                "SELECT deployment FROM deployment_events WHERE message LIKE %s",
                ["creation record of % written again%"],
            )
            assert sorted(row["deployment"] for row in notes) == sorted(names)
            [removed] = sql(
                "SELECT metadata->>'reason' AS reason FROM deployment_events "
                "WHERE action = 'remove' AND metadata->>'container_id' = %s",
                [look_alike[:12]],
            )
            assert removed["reason"] in ("unrecorded", "duplicate")
            assert not sql(UNRESOLVED, [cluster])
        finally:
            daemon.stop()
    finally:
        pair.close()
