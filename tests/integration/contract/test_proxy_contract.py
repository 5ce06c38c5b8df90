"""The in-memory proxy (tests/fake_proxy.py) against a real HAProxy (a private one): the
same plans leave both in the same state, a busy server is kept until idle by both, and an
unreachable proxy is the same transient error. And what the real one logs: only the requests
that went wrong or were retried, without query strings (nothing for a connection that sent
no request)."""

from __future__ import annotations

import http.client
import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from controller.gateways.haproxy import HaproxyGateway
from controller.gateways.haproxy_server import PrivateHaproxy
from controller.gateways.processes import free_port
from controller.loop.ports_proxy import ProxyAdmin
from controller.model.errors import ProxyUnavailable
from controller.policy.haproxy import ProxyState, plan
from controller.policy.routes import RouteTarget
from tests.fake_proxy import FakeProxy
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def haproxy() -> Iterator[PrivateHaproxy]:
    proxy = PrivateHaproxy(pool_size=8)
    yield proxy
    proxy.close()


def shape(state: ProxyState) -> tuple[object, ...]:
    servers = {
        backend: sorted((s.name, s.address, s.serving) for s in found.values())
        for backend, found in state.servers.items()
        if found
    }
    return state.pool, dict(state.exact), dict(state.prefix), servers


STEPS = [
    [RouteTarget("web", 0, "web.test", "/", ("127.0.0.1:1", "127.0.0.1:2"))],
    [RouteTarget("web", 0, "web.test", "/", ("127.0.0.1:2", "127.0.0.1:3"))],
    [
        RouteTarget("web", 0, "web.test", "/", ("127.0.0.1:3",)),
        RouteTarget("api", 0, "web.test", "/api", ("127.0.0.1:4",)),
    ],
    [RouteTarget("api", 0, "web.test", "/api/", ("127.0.0.1:4", "127.0.0.1:5"))],
    [],
]


def test_the_same_plans_leave_the_fake_and_haproxy_alike(haproxy: PrivateHaproxy) -> None:
    real = HaproxyGateway(haproxy.admin_url)
    fake = FakeProxy(pool_size=8)
    gateways: list[ProxyAdmin] = [real, fake]
    for desired in STEPS:
        for gateway in gateways:
            gateway.apply(plan(desired, gateway.observe()))
        assert shape(real.observe()) == shape(fake.observe()), desired
    assert real.observe().servers == {} and real.observe().prefix == {}


class Answering(http.server.BaseHTTPRequestHandler):
    """A backend answering "ok" (`Slow` only once released)."""

    def do_GET(self) -> None:
        self.hold()
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def hold(self) -> None:
        pass

    def log_message(self, *_: object) -> None:
        pass


class Slow(Answering):
    release = threading.Event()

    def hold(self) -> None:
        Slow.release.wait(10)


def test_a_server_with_a_request_in_flight_is_kept_until_it_is_done(
    haproxy: PrivateHaproxy,
) -> None:
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    address = f"127.0.0.1:{backend.server_address[1]}"
    real = HaproxyGateway(haproxy.admin_url)
    answers: list[int] = []
    try:
        real.apply(plan([RouteTarget("slow", 0, "slow.test", "/", (address,))], real.observe()))

        def request() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", haproxy.http_port, timeout=15)
            connection.request("GET", "/", headers={"Host": "slow.test"})
            answers.append(connection.getresponse().status)

        client = threading.Thread(target=request)
        client.start()
        for _ in range(500):
            if real.in_flight({address}):
                break
            threading.Event().wait(0.01)
        assert real.in_flight({address}) == 1
        retired = plan([RouteTarget("slow", 0, "slow.test", "/", ())], real.observe())
        assert retired.retire and not retired.delete
        real.apply(retired)
        left = real.observe().servers
        assert any(not s.serving for found in left.values() for s in found.values())
        Slow.release.set()
        client.join(15)
        assert answers == [200], "the request in flight finished on the retired server"
        assert real.in_flight({address}) == 0
        real.apply(plan([], real.observe()))
        assert real.observe().servers == {}
    finally:
        backend.shutdown()
        backend.server_close()


def test_an_unreachable_proxy_is_transient() -> None:
    with pytest.raises(ProxyUnavailable):
        HaproxyGateway("unix:///nonexistent/berth.sock").observe()
    fake = FakeProxy()
    fake.down = True
    with pytest.raises(ProxyUnavailable):
        fake.observe()


def test_the_proxy_logs_the_requests_that_failed_and_never_a_query_string(
    haproxy: PrivateHaproxy,
) -> None:
    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    serving, refusing = f"127.0.0.1:{backend.server_address[1]}", f"127.0.0.1:{free_port()}"
    real = HaproxyGateway(haproxy.admin_url)
    targets = [
        RouteTarget("ok", 0, "ok.test", "/", (serving,)),
        RouteTarget("gone", 0, "gone.test", "/", (refusing,)),
    ]

    def status(host: str, path: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", haproxy.http_port, timeout=15)
        try:
            connection.request("GET", path, headers={"Host": host})
            return connection.getresponse().status
        finally:
            connection.close()  # HAProxy logs a request when its stream ends

    try:
        real.apply(plan(targets, real.observe()))
        before = len(haproxy.request_log(most=1000))
        socket.create_connection(("127.0.0.1", haproxy.http_port), timeout=5).close()  # null
        assert status("ok.test", "/fine?token=visible-never") == 200
        assert status("gone.test", "/lost?token=s3cret") == 503
        logged = wait_for(
            lambda: haproxy.request_log(most=1000)[before:], timeout_s=10, what="logged"
        )
        assert len(logged) == 1 and " 503 " in logged[0] and "GET /lost" in logged[0], logged
        assert "s3cret" not in logged[0] and "token" not in logged[0], "no query string"
        assert "/3 " in logged[0] or "/+3 " in logged[0], f"its retries are counted: {logged}"
    finally:
        real.apply(plan([], real.observe()))
        backend.shutdown()
        backend.server_close()
