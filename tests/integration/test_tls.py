"""HTTPS routes through a real HAProxy with certificates from a real ACME server (Debian's
pebble on loopback, its mock DNS sending every name to 127.0.0.1): the http-01 challenge is
answered through Berth's proxy, the certificate is served for the route's host, plain HTTP
is redirected, a forced renewal under load fails no request, the expiry is a metric, no
key is ever shown, and a route that drops `tls` drops its certificate and redirect."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from controller.app.daemon import Daemon
from controller.gateways.haproxy import HaproxyGateway
from controller.gateways.haproxy_server import PrivateHaproxy
from controller.gateways.pebble_server import PrivatePebble
from controller.gateways.tls_material import facts
from tests.integration.conftest import Sql, berth, berth_ok, report, wait_for

pytestmark = pytest.mark.integration

HOST = "web.berth.test"
PROBE = ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
HEALTH = {"test": PROBE, "interval_s": 0.5, "timeout_s": 2, "retries": 3}
TLS_ROUTE = [{"host": HOST, "port": 8080, "tls": {"issuer": "acme"}}]


@pytest.fixture
def proxy() -> Iterator[PrivateHaproxy]:
    haproxy = PrivateHaproxy()
    yield haproxy
    haproxy.close()


@pytest.fixture
def pebble(proxy: PrivateHaproxy) -> Iterator[PrivatePebble]:
    server = PrivatePebble(proxy.http_port, proxy.https_port)
    yield server
    server.close()


def trusting(pebble: PrivatePebble, tmp_path: Path) -> ssl.SSLContext:
    roots = tmp_path / "roots.pem"
    roots.write_text(pebble.root_pem)
    return ssl.create_default_context(cafile=str(roots))


def https_connection(
    proxy: PrivateHaproxy, context: ssl.SSLContext, host: str = HOST
) -> http.client.HTTPConnection:
    """A connection to the proxy's HTTPS port naming `host` (SNI), the chain verified."""
    raw = socket.create_connection(("127.0.0.1", proxy.https_port), timeout=5)
    connection = http.client.HTTPConnection(host, proxy.https_port, timeout=5)
    connection.sock = context.wrap_socket(raw, server_hostname=host)
    return connection


def served_serial(proxy: PrivateHaproxy, context: ssl.SSLContext) -> str:
    """The serial of the certificate served for HOST ("" while none verifies: the default
    certificate of a proxy that has none yet)."""
    try:
        connection = https_connection(proxy, context)
    except ssl.SSLCertVerificationError:
        return ""
    try:
        assert isinstance(connection.sock, ssl.SSLSocket)
        der = connection.sock.getpeercert(binary_form=True)
        assert der is not None
        return facts(ssl.DER_cert_to_PEM_cert(der)).serial
    finally:
        connection.close()


def https_status(proxy: PrivateHaproxy, context: ssl.SSLContext) -> int:
    connection = https_connection(proxy, context)
    try:
        connection.request("GET", "/")
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def get_http(proxy: PrivateHaproxy, path: str = "/") -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.http_port, timeout=5)
    connection.request("GET", path, headers={"Host": HOST})
    answer = connection.getresponse()
    answer.read()
    connection.close()
    return answer


class HttpsLoad:
    """HTTPS requests on kept-alive connections, a new connection (a new handshake) every
    tenth: bounded in count and time, every failure kept."""

    def __init__(self, proxy: PrivateHaproxy, context: ssl.SSLContext) -> None:
        self.proxy, self.context = proxy, context
        self.sent = self.handshakes = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HttpsLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        connection: http.client.HTTPConnection | None = None
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline and self.sent < 50_000:
            try:
                if connection is None or self.sent % 10 == 0:
                    if connection is not None:
                        connection.close()
                    connection = https_connection(self.proxy, self.context)
                    self.handshakes += 1
                connection.request("GET", "/")
                answer = connection.getresponse()
                answer.read()
                if answer.status != 200:
                    self.failures.append(f"status {answer.status}")
            except (OSError, http.client.HTTPException) as error:
                self.failures.append(repr(error))
                connection = None
            self.sent += 1
        if connection is not None:
            connection.close()


def certificate(sql: Sql) -> dict[str, object] | None:
    rows = sql("SELECT * FROM certificate_status WHERE host = %s AND serial IS NOT NULL", [HOST])
    return rows[0] if rows else None


def test_an_https_route_gets_an_acme_certificate_renewed_under_load(
    sql: Sql,
    start_daemon: Callable[..., Daemon],
    proxy: PrivateHaproxy,
    pebble: PrivatePebble,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    start_daemon(
        proxy_admin_url=proxy.admin_url,
        proxy_http_addr=proxy.http_addr,
        proxy_https_addr=proxy.https_addr,
        acme_directory_url=pebble.directory_url,
        acme_ca_bundle=pebble.ca_bundle,
        certificate_interval_s=0.5,
    )
    context = trusting(pebble, tmp_path)
    started = time.monotonic()
    sql.insert("web", replicas=2, healthcheck=HEALTH, routes=TLS_ROUTE)
    first = wait_for(lambda: certificate(sql), timeout_s=90, what="a certificate from pebble")
    wait_for(lambda: served_serial(proxy, context) == first["serial"], what="served")
    report(capsys, f"route inserted -> ACME certificate served: {time.monotonic() - started:.1f}s")

    wait_for(lambda: sql.converged("web"), what="web converged")
    wait_for(lambda: https_status(proxy, context) == 200, what="served over HTTPS")
    connection = https_connection(proxy, context)
    connection.request("GET", "/")
    answer = connection.getresponse()
    assert (answer.status, answer.read()) == (200, b"<h1>hello from berth</h1>\n")
    assert isinstance(connection.sock, ssl.SSLSocket)
    peer = connection.sock.getpeercert()
    assert peer and "Pebble" in str(peer["issuer"]), peer
    connection.close()
    redirected = get_http(proxy, "/a?b=1")
    assert redirected.status == 308
    assert redirected.getheader("location") == f"https://{HOST}:{proxy.https_port}/a?b=1"
    value = REGISTRY.get_sample_value("berth_certificate_expiry_timestamp_seconds", {"host": HOST})
    assert value is not None and abs(value - first["not_after"].timestamp()) < 1

    with HttpsLoad(proxy, context) as load:
        wait_for(lambda: load.sent > 200, what="load running")
        assert "renewal of web.berth.test requested" in berth_ok(sql.url, "cert", "renew", HOST)
        renewed = wait_for(
            lambda: (c := certificate(sql)) and c["serial"] != first["serial"] and c,
            timeout_s=60,
            what="renewed",
        )
        wait_for(lambda: served_serial(proxy, context) == renewed["serial"], what="new one served")
        sent_at_switch = load.sent
        wait_for(lambda: load.sent > sent_at_switch + 200, what="load after the switch")
    report(
        capsys,
        f"forced renewal under load: {load.sent} HTTPS requests, {load.handshakes} handshakes, "
        f"{len(load.failures)} failed",
    )
    assert load.failures == [], load.failures[:5]
    assert load.handshakes > 20

    proxy.restart()  # comes back with no certificate, as a wiped proxy would
    wait_for(lambda: served_serial(proxy, context) == renewed["serial"], what="installed again")

    listed = berth_ok(sql.url, "certs")
    assert HOST in listed and "PRIVATE KEY" not in listed
    missing = berth(sql.url, "cert", "renew", "nobody.berth.test")
    assert missing.returncode == 3 and "nobody.berth.test" in missing.stderr
    events = json.dumps(
        sql("SELECT * FROM deployment_events WHERE deployment = 'web'"), default=str
    )
    assert "PRIVATE KEY" not in events

    plain = [{"host": HOST, "port": 8080}]
    sql("UPDATE deployments SET routes = %s WHERE name = 'web'", [json.dumps(plain)])
    wait_for(lambda: get_http(proxy).status == 200, what="HTTP served again, no redirect")
    wait_for(lambda: HOST not in HaproxyGateway(proxy.admin_url).certificates(), what="removed")
    wait_for(lambda: not sql("SELECT 1 FROM certificates"), what="its row forgotten")


def test_a_bad_tls_field_is_refused_naming_it(sql: Sql) -> None:
    for tls, field in (
        ({"issuer": "letsencrypt"}, "routes[0].tls.issuer"),
        ({"redirect_http": "yes"}, "routes[0].tls.redirect_http"),
        ({"wildcard": True}, "routes[0].tls.wildcard"),
    ):
        route = [{"host": HOST, "port": 8080, "tls": tls}]
        with pytest.raises(Exception, match=field.replace("[", r"\[").replace("]", r"\]")):
            sql.insert("web", routes=route)
