"""The HTTP API against a real Postgres and a real `berth run`: CRUD, errors, auth, the
live stream and its resumption, webhooks."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from controller.app.api_server import ApiServer
from controller.app.daemon import Daemon
from controller.gateways.processes import free_port
from tests.integration.api_client import (
    Receiver,
    StreamReader,
    client,
    token,
    webhook_receiver,
)
from tests.integration.conftest import (
    EXAMPLE_IMAGE,
    EXAMPLE_IMAGE_2,
    Sql,
    berth,
    report,
    settings_for,
    wait_for,
)
from tests.integration.replicas import ReplicaSet


def _tar(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _phase(api: httpx.Client, name: str) -> dict[str, Any] | None:
    answer = api.get(f"/api/v1/deployments/{name}")
    if answer.status_code != 200:
        return None
    status: dict[str, Any] = answer.json()["status"]
    converged = status["converged"] and status["ready_replicas"] == status["desired_replicas"]
    return status if converged else None


def test_crud_errors_and_auth_against_a_real_berth_run(
    replicas: ReplicaSet, sql: Sql, database_url: str
) -> None:
    port = free_port()
    replicas.start(BERTH_API_ADDR=f"127.0.0.1:{port}", BERTH_ARCHIVE_MAX_BYTES="100000")
    replicas.wait_for_leader()
    writer, reader = token(database_url, "write", "ci"), token(database_url, "read", "viewer")
    api, read_only, anonymous = client(port, writer), client(port, reader), client(port, None)
    wait_for(lambda: api.get("/api/v1/deployments").status_code == 200, what="API answers")

    # auth: every /api route needs a token; a read token cannot write
    assert anonymous.get("/api/v1/deployments").status_code == 401
    assert client(port, "berth_not-a-token").get("/api/v1/deployments").status_code == 401
    refused = read_only.post("/api/v1/deployments", json={"name": "x", "image": EXAMPLE_IMAGE})
    assert refused.status_code == 403 and "read" in refused.json()["error"]
    assert read_only.get("/api/v1/token").json() == {"name": "viewer", "scope": "read"}

    created = api.post(
        "/api/v1/deployments", json={"name": "web", "image": EXAMPLE_IMAGE, "replicas": 2}
    )
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == "/api/v1/deployments/web"
    assert created.json()["generation"] == 1
    status = wait_for(lambda: _phase(api, "web"), timeout_s=60, what="web converged via API")
    assert status["ready_replicas"] == 2
    assert [row["name"] for row in read_only.get("/api/v1/deployments").json()["items"]] == ["web"]

    # errors: the database's own message naming the field, never a 500
    cases: list[tuple[dict[str, Any], str]] = [
        ({"name": "bad", "image": EXAMPLE_IMAGE, "replicas": "two"}, "deployments.replicas"),
        ({"name": "bad", "image": EXAMPLE_IMAGE, "colour": "red"}, "deployments.colour"),
        ({"name": "bad", "image": EXAMPLE_IMAGE, "ports": [{"container": 0}]},
         "deployments.ports[0].container"),
        ({"name": "Bad_Name", "image": EXAMPLE_IMAGE}, "deployments.name"),
        ({"name": "bad", "image": EXAMPLE_IMAGE, "env": {"A": 1}}, "deployments.env.A"),
    ]  # fmt: skip
    for body, field in cases:
        answer = api.post("/api/v1/deployments", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["field"] == field, answer.json()
        assert answer.json()["error"].startswith(field + ":")
    malformed = api.post(
        "/api/v1/deployments", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 422 and "Traceback" not in malformed.text
    assert api.get("/api/v1/deployments/nope").status_code == 404
    assert api.get("/api/v1/deployments/nope/events").status_code == 404
    assert api.delete("/api/v1/deployments/nope").status_code == 404
    duplicate = api.post("/api/v1/deployments", json={"name": "web", "image": EXAMPLE_IMAGE})
    assert duplicate.status_code == 409
    stale = api.put(
        "/api/v1/deployments/web", json={"image": EXAMPLE_IMAGE}, headers={"If-Match": '"7"'}
    )
    assert stale.status_code == 409 and "generation 1" in stale.json()["error"]
    assert sql("SELECT count(*) AS n FROM deployments")[0]["n"] == 1, "nothing bad was written"

    # patch (merge) and the rollout it causes; events newest first, paginated
    patched = api.patch(
        "/api/v1/deployments/web", json={"image": EXAMPLE_IMAGE_2}, headers={"If-Match": '"1"'}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["spec"]["replicas"] == 2 and patched.json()["generation"] == 2
    wait_for(lambda: (s := _phase(api, "web")) and s["observed_generation"] == 2, timeout_s=60,
             what="generation 2 rolled out")  # fmt: skip
    page = api.get("/api/v1/deployments/web/events", params={"limit": 3}).json()
    ids = [event["id"] for event in page["items"]]
    assert len(ids) == 3 and ids == sorted(ids, reverse=True)
    older = api.get(f"/api/v1/deployments/web/events{page['next']}").json()["items"]
    assert older and older[0]["id"] < ids[-1]
    revisions = api.get("/api/v1/deployments/web/revisions").json()["items"]
    assert [(r["revision"], r["outcome"]) for r in revisions] == [(2, "serving"), (1, "superseded")]

    rolled = api.post("/api/v1/deployments/web/rollback", json={})
    assert rolled.status_code == 200 and rolled.json()["revision"] == 1, rolled.text
    wait_for(lambda: (s := _phase(api, "web")) and s["observed_generation"] == 3, timeout_s=60,
             what="rolled back to revision 1")  # fmt: skip
    assert api.get("/api/v1/deployments/web").json()["spec"]["image"] == EXAMPLE_IMAGE
    assert api.post("/api/v1/deployments/nope/rollback", json={}).status_code == 404

    logs = api.get("/api/v1/deployments/web/logs", params={"tail": 10})
    assert logs.status_code == 200 and logs.headers["content-type"].startswith("text/plain")
    cluster = api.get("/api/v1/cluster").json()
    assert cluster["term"] >= 1 and cluster["leader"]["holder_pid"] == replicas.leader().pid  # type: ignore[union-attr]
    assert len(cluster["replicas"]) == 1

    # builds and archives
    assert api.get("/api/v1/builds").json()["items"] == []
    assert api.get("/api/v1/builds/999").status_code == 404
    assert api.post("/api/v1/builds/999/cancel").status_code == 404
    assert api.post("/api/v1/deployments/web/retry").status_code == 422  # an image: no source
    archive = _tar({"Dockerfile": f"FROM {EXAMPLE_IMAGE}\n"})
    uploaded = api.post("/api/v1/archives", content=archive, headers={"X-Filename": "app.tgz"})
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["sha256"] == hashlib.sha256(archive).hexdigest()
    again = api.post("/api/v1/archives", content=archive)
    assert again.status_code == 200 and again.json()["new"] is False
    assert api.post("/api/v1/archives", content=b"not a tar").status_code == 422
    too_big = api.post("/api/v1/archives", content=b"\0" * 200_000)
    assert too_big.status_code == 413 and "BERTH_ARCHIVE_MAX_BYTES" in too_big.json()["error"]
    assert read_only.post("/api/v1/archives", content=archive).status_code == 403

    spec = api.get("/api/v1/openapi.json").json()
    assert "/api/v1/deployments/{name}" in spec["paths"] and "/api/v1/stream" in spec["paths"]

    # revoked: refused at the next request
    assert berth(database_url, "token", "revoke", "viewer").returncode == 0
    assert read_only.get("/api/v1/deployments").status_code == 401
    listed = berth(database_url, "token", "list", "-o", "json").stdout
    assert reader not in listed and writer not in listed, "tokens are never shown again"

    deleted = api.delete("/api/v1/deployments/web", headers={"If-Match": '"3"'})
    assert deleted.status_code == 202, deleted.text
    wait_for(lambda: api.get("/api/v1/deployments/web").status_code == 404, what="deleted")
    wait_for(lambda: not sql("SELECT 1 FROM deployment_status WHERE name = 'web'"), timeout_s=60,
             what="containers removed, status forgotten")  # fmt: skip
    assert replicas.leader() is not None, "the daemon is alive after all that input"


def test_the_api_answers_503_with_retry_after_while_postgres_is_down(
    private_postgres: tuple[Any, Sql], cluster: str, capsys: pytest.CaptureFixture[str]
) -> None:
    server, sql = private_postgres
    settings = settings_for(cluster, sql.url, api_addr="127.0.0.1:0")
    api_server = ApiServer(settings, sql.url, None)
    api_server.start()
    try:
        secret = api_server.database.api.create_token("ops", "read")[0]
        api = client(api_server.port, secret)
        assert api.get("/api/v1/deployments").status_code == 200
        server.stop()
        started = time.monotonic()
        answer = api.get("/api/v1/deployments")
        took = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "2" and "Postgres" in answer.json()["error"]
        report(capsys, f"API answer while Postgres is down: 503 in {took:.2f}s")
        server.start()
        wait_for(lambda: api.get("/api/v1/deployments").status_code == 200, timeout_s=30,
                 what="the API answers again")  # fmt: skip
    finally:
        api_server.stop()


def _two_api_servers(cluster: str, url: str) -> tuple[ApiServer, ApiServer]:
    servers = []
    for _ in range(2):
        server = ApiServer(settings_for(cluster, url, api_addr="127.0.0.1:0"), url, None)
        server.start()
        servers.append(server)
    return servers[0], servers[1]


def test_the_stream_delivers_plain_sql_changes_and_resumes_without_a_gap_on_another_replica(
    sql: Sql, cluster: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = _two_api_servers(cluster, sql.url)
    try:
        secret = first.database.api.create_token("watcher", "read")[0]
        sql.insert("web")
        stream = StreamReader(first.port, secret).start()
        latencies = []
        for progress in (10, 40, 70):
            committed = time.monotonic()
            sql(
                "INSERT INTO deployment_status (name, phase, phase_progress) "
                "VALUES ('web', 'creating', %s) "
                "ON CONFLICT (name) DO UPDATE SET phase = 'creating', phase_progress = %s",
                [progress, progress],
            )

            def arrived(percent: int = progress) -> list[Any]:
                return [
                    c
                    for c in stream.changes
                    if c.kind == "status" and c.data["phase_progress"] == percent
                ]

            seen = wait_for(arrived, timeout_s=5, interval_s=0.005, what=f"{progress}% streamed")
            latencies.append(seen[0].at - committed)
        report(
            capsys,
            f"SQL commit -> SSE event (plain SQL): {[f'{x * 1000:.0f} ms' for x in latencies]}",
        )

        stream.close()
        resume_from = stream.last_id()
        # while disconnected: events, a status change, a spec change, a deletion
        for index in range(20):
            sql(
                "INSERT INTO deployment_events (deployment, kind, level, message) "
                "VALUES ('web', 'note', 'info', %s)",
                [f"note {index}"],
            )
        sql(
            "UPDATE deployment_status SET phase = 'active', phase_progress = 100 WHERE name = 'web'"
        )
        sql("UPDATE deployments SET replicas = 3 WHERE name = 'web'")
        sql.insert("gone")
        sql("DELETE FROM deployments WHERE name = 'gone'")
        expected = {
            row["stream_seq"]
            for table in ("deployment_events", "deployment_status", "deployments")
            for row in sql(f"SELECT stream_seq FROM {table} WHERE stream_seq > %s", [resume_from])
        }
        assert len(expected) >= 23

        resumed = StreamReader(second.port, secret, last_event_id=resume_from).start()
        wait_for(lambda: expected <= {c.seq for c in resumed.changes}, timeout_s=10,
                 what="every change made while disconnected, from the other replica")  # fmt: skip
        notes = [c.data["message"] for c in resumed.changes if c.kind == "event"]
        assert [n for n in notes if n.startswith("note")] == [f"note {i}" for i in range(20)]
        assert any(c.kind == "event" and c.data["action"] == "deleted" for c in resumed.changes)
        status = [c for c in resumed.changes if c.kind == "status"][-1]
        assert status.data["phase"] == "active"

        sql("UPDATE deployment_status SET message = 'live again' WHERE name = 'web'")
        wait_for(lambda: any(c.data.get("message") == "live again" for c in resumed.changes),
                 timeout_s=5, what="live changes after the replay")  # fmt: skip
        seqs = [c.seq for c in resumed.changes]
        assert len(seqs) == len(set(seqs)), "no change twice within one connection"

        only_web = StreamReader(first.port, secret, last_event_id=0, deployment="gone").start()
        wait_for(lambda: only_web.changes, timeout_s=5, what="filtered replay")
        assert {c.deployment for c in only_web.changes} == {"gone"}
        for reader in (resumed, only_web):
            reader.close()
    finally:
        first.stop()
        second.stop()


def _signed(headers: dict[str, str], body: bytes, secret: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("X-Berth-Signature", ""), expected)


def _deliveries(sql: Sql, webhook: str) -> list[dict[str, Any]]:
    return sql(
        "SELECT d.* FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id "
        "WHERE w.name = %s ORDER BY d.id",
        [webhook],
    )


def test_webhooks_are_signed_retried_after_a_500_delivered_once_and_survive_a_leader_change(
    sql: Sql, start_daemon: Callable[..., Daemon]
) -> None:
    receiver = Receiver(answers={"active": [500]})
    with webhook_receiver(receiver) as url:
        add = "INSERT INTO webhooks (name, url, events, secret) VALUES (%s, %s, %s, %s)"
        sql(add, ["ci", url, json.dumps(["active", "failed"]), "s3cret"])
        sql(add, ["dead", "http://127.0.0.1:9/nothing-listens", json.dumps(["*"]), ""])
        first = start_daemon(webhook_retry_base_s=0.2)
        sql.insert("web", replicas=2)
        wait_for(lambda: sql.converged("web"), what="converged (a dead endpoint slows nothing)")
        wait_for(lambda: len(receiver.received) >= 2, timeout_s=20, what="retried after the 500")
        (headers_1, body_1), (headers_2, body_2) = receiver.received[:2]
        assert body_1 == body_2 and headers_1["X-Berth-Delivery"] == headers_2["X-Berth-Delivery"]
        assert _signed(headers_2, body_2, "s3cret") and not _signed(headers_2, body_2, "wrong")
        payload = json.loads(body_2)
        assert payload["event"] == "active" and payload["deployment"] == "web"
        assert payload["ready_replicas"] == 2
        wait_for(lambda: _deliveries(sql, "ci")[0]["status"] == "delivered", what="delivered")
        assert [
            (r["event"], r["status"], r["attempts"], r["last_status_code"])
            for r in _deliveries(sql, "ci")
        ] == [("active", "delivered", 2, 200)]
        dead = [r for r in _deliveries(sql, "dead") if r["event"] == "active"]
        assert dead and dead[0]["status"] == "pending" and dead[0]["last_error"]

        # a delivery caused while no leader runs is sent, and retried, by the next leader
        first.stop()
        receiver.answers["failed"] = [503]
        sql("UPDATE deployment_status SET phase = 'failed' WHERE name = 'web'")  # by hand
        start_daemon(webhook_retry_base_s=0.2)
        wait_for(
            lambda: any(r["event"] == "failed" and r["status"] == "delivered"
                        for r in _deliveries(sql, "ci")),
            timeout_s=30, what="the 'failed' delivery, retried and delivered by the new leader",
        )  # fmt: skip
        failed = [json.loads(body)["delivery"] for _, body in receiver.received
                  if json.loads(body)["event"] == "failed"]  # fmt: skip
        assert len(failed) == 2 and len(set(failed)) == 1, "one delivery, POSTed twice (a 503)"
        events = [r["event"] for r in _deliveries(sql, "ci")]
        assert events.count("failed") == 1 and events.count("active") >= 1, events


def test_a_phase_change_wakes_the_webhook_sender_only_for_a_queued_delivery(sql: Sql) -> None:
    """Schema 22: without an enabled webhook a phase change queues nothing and notifies
    nobody (it woke the sender for nothing on every change); with one, it does both."""
    with psycopg.connect(sql.url, autocommit=True) as listener:
        listener.execute("LISTEN berth_webhooks")

        def woken() -> int:
            return sum(1 for _ in listener.notifies(timeout=0.5))

        sql("INSERT INTO deployments (name, image) VALUES ('quiet', 'berth-example/busybox:1')")
        sql("INSERT INTO deployment_status (name, phase) VALUES ('quiet', 'queued')")
        sql("UPDATE deployment_status SET phase = 'creating' WHERE name = 'quiet'")
        assert woken() == 0 and not sql("SELECT id FROM webhook_deliveries")
        sql("INSERT INTO webhooks (name, url) VALUES ('listening', 'http://127.0.0.1:9/')")
        sql("UPDATE deployment_status SET phase = 'starting' WHERE name = 'quiet'")
        assert woken() == 0, "a phase no webhook asks for (the default: settled ones)"
        sql(
            "UPDATE deployment_status SET phase = 'active', phase_progress = 100 "
            "WHERE name = 'quiet'"
        )
        assert woken() == 1
        assert [r["event"] for r in sql("SELECT event FROM webhook_deliveries")] == ["active"]


def test_bad_webhook_rows_are_refused_naming_the_field(sql: Sql) -> None:
    with pytest.raises(Exception, match=r"webhooks.events\[1\]: unknown event"):
        sql(
            "INSERT INTO webhooks (name, url, events) VALUES ('x', 'http://h/x', %s)",
            [json.dumps(["active", "done"])],
        )
    with pytest.raises(Exception, match="webhooks_url_http"):
        sql("INSERT INTO webhooks (name, url) VALUES ('x', 'ftp://h/x')")


def test_berth_token_create_shows_the_token_once_and_stores_its_hash(
    sql: Sql, database_url: str, tmp_path: Path
) -> None:
    secret = token(database_url, "write", "deploy-bot")
    assert secret.startswith("berth_") and len(secret) > 40
    stored = sql("SELECT token_hash, scope FROM api_tokens WHERE name = 'deploy-bot'")
    assert stored == [{"token_hash": hashlib.sha256(secret.encode()).hexdigest(), "scope": "write"}]
    again = berth(database_url, "token", "create", "--scope", "read", "--name", "deploy-bot")
    assert again.returncode != 0 and "exists" in again.stderr
    bad = berth(database_url, "token", "create", "--scope", "admin")
    assert bad.returncode != 0
