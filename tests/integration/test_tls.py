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
from controller.gateways.tls_material import facts, self_signed
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


def served_serial(proxy: PrivateHaproxy, context: ssl.SSLContext, host: str = HOST) -> str:
    """The serial of the certificate served for `host` ("" while none verifies: the default
    certificate of a proxy that has none yet)."""
    try:
        connection = https_connection(proxy, context, host)
    except ssl.SSLCertVerificationError:
        return ""
    try:
        assert isinstance(connection.sock, ssl.SSLSocket)
        der = connection.sock.getpeercert(binary_form=True)
        assert der is not None
        return facts(ssl.DER_cert_to_PEM_cert(der)).serial
    finally:
        connection.close()


def https_status(proxy: PrivateHaproxy, context: ssl.SSLContext, host: str = HOST) -> int:
    try:
        connection = https_connection(proxy, context, host)
    except ssl.SSLCertVerificationError:
        return 0
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


def test_internal_ca_and_operators_certificates(
    sql: Sql, start_daemon: Callable[..., Daemon], proxy: PrivateHaproxy, tmp_path: Path
) -> None:
    start_daemon(
        proxy_admin_url=proxy.admin_url,
        proxy_http_addr=proxy.http_addr,
        proxy_https_addr=proxy.https_addr,
        certificate_interval_s=0.5,
    )
    internal, files = "internal.berth.test", "files.berth.test"
    certificate, key = self_signed([files], days=90)
    sql(
        "INSERT INTO secrets (name, value) VALUES ('files-cert', %s), ('files-key', %s)",
        [certificate, key],
    )
    routes = [
        {"host": internal, "port": 8080, "tls": {"issuer": "internal"}},
        {"host": files, "port": 8080, "tls": {"issuer": "files",
         "certificate_secret": "files-cert", "key_secret": "files-key"}},
    ]  # fmt: skip
    sql.insert("web", replicas=1, healthcheck=HEALTH, routes=routes)
    wait_for(lambda: sql.converged("web"), what="web converged")
    authority = wait_for(
        lambda: (r := berth(sql.url, "cert", "ca")).returncode == 0 and r.stdout,
        what="the internal CA",
    )
    (tmp_path / "ca.pem").write_text(authority)
    trusted = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    wait_for(lambda: https_status(proxy, trusted, internal) == 200, what="internal, served")
    (tmp_path / "files.pem").write_text(certificate)
    operators = ssl.create_default_context(cafile=str(tmp_path / "files.pem"))
    wait_for(lambda: https_status(proxy, operators, files) == 200, what="files, served")

    renewed, renewed_key = self_signed([files], days=90)  # the operator's renewal
    sql("UPDATE secrets SET value = %s WHERE name = 'files-cert'", [renewed])
    sql("UPDATE secrets SET value = %s WHERE name = 'files-key'", [renewed_key])
    (tmp_path / "files.pem").write_text(renewed)
    operators = ssl.create_default_context(cafile=str(tmp_path / "files.pem"))
    wait_for(lambda: served_serial(proxy, operators, files) == facts(renewed).serial,
             what="the renewed file served")  # fmt: skip

    wrong, wrong_key = self_signed(["elsewhere.test"])
    sql("UPDATE secrets SET value = %s WHERE name = 'files-cert'", [wrong])
    sql("UPDATE secrets SET value = %s WHERE name = 'files-key'", [wrong_key])
    failed = wait_for(
        lambda: sql("SELECT last_error FROM certificate_status WHERE host = %s AND attempts > 0",
                    [files]),
        what="the wrong file refused",
    )  # fmt: skip
    message = failed[0]["last_error"]
    assert "files-cert" in message and f"not {files}" in message, message
    assert "PRIVATE KEY" not in message and "CERTIFICATE" not in message
    assert served_serial(proxy, operators, files) == facts(renewed).serial, "the old one serves on"


def test_a_bad_tls_field_is_refused_naming_it(sql: Sql) -> None:
    sql("INSERT INTO secrets (name, value) VALUES ('a-cert', 'x')")
    for tls, field in (
        ({"issuer": "letsencrypt"}, "routes[0].tls.issuer"),
        ({"redirect_http": "yes"}, "routes[0].tls.redirect_http"),
        ({"wildcard": True}, "routes[0].tls.wildcard"),
        ({"issuer": "files", "certificate_secret": "a-cert"}, "routes[0].tls.key_secret"),
        ({"issuer": "files", "certificate_secret": "nope", "key_secret": "a-cert"},
         "routes[0].tls.certificate_secret"),
        ({"issuer": "acme", "key_secret": "a-cert"}, "routes[0].tls.key_secret"),
    ):  # fmt: skip
        route = [{"host": HOST, "port": 8080, "tls": tls}]
        with pytest.raises(Exception, match=field.replace("[", r"\[").replace("]", r"\]")):
            sql.insert("web", routes=route)
    # With a valid tls, the route's other fields are checked as before.
    for bad, field in (
        ({"host": "evil.test/../x", "port": 80}, r"routes\[0\]\.host"),
        ({"host": HOST, "port": 70000}, r"routes\[0\]\.port"),
        ({"host": HOST, "port": 80, "path_prefix": "x"}, r"routes\[0\]\.path_prefix"),
    ):
        with pytest.raises(Exception, match=field):
            sql.insert("web", routes=[{**bad, "tls": {"issuer": "internal"}}])
