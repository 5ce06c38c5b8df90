"""Certificates: when one is due (a table), which hosts ask for TLS and which are
redirected, and the certificate keeper on in-memory fakes (obtained once, installed where
the proxy's serial differs, redirected only once served, a failure waits its backoff,
hosts dropped are taken out)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controller.loop.certificates import CertificateKeeper
from controller.loop.routes import RouteKeeper
from controller.model.certificates import (
    AcmeAccount,
    HostTls,
    IssuedCertificate,
    StoredCertificate,
)
from controller.model.errors import CertificateFailed, Deposed
from controller.model.records import Fence
from controller.model.spec import Route, RouteTls
from controller.policy.certificates import due, redirects, wanted
from tests.fake_proxy import FakeProxy

NOW = datetime(2026, 12, 6, tzinfo=UTC)
WISH = HostTls("web.test", "acme", True)


def stored(**fields: Any) -> StoredCertificate:
    values: dict[str, Any] = {
        "host": "web.test",
        "issuer": "acme",
        "serial": "AB",
        "not_before": NOW - timedelta(days=10),
        "not_after": NOW + timedelta(days=80),
        "updated_at": NOW - timedelta(days=10),
    }
    return StoredCertificate(**{**values, **fields})


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (None, "no certificate yet"),
        (stored(serial=None), "no certificate yet"),
        (stored(), None),
        (stored(not_before=NOW - timedelta(days=61), not_after=NOW + timedelta(days=29)),
         "two thirds"),
        (stored(renew_requested_at=NOW - timedelta(minutes=1)), "renewal requested"),
        (stored(renew_requested_at=NOW - timedelta(days=11)), None),  # before it was issued
        (stored(serial=None, attempts=1, last_attempt_at=NOW - timedelta(seconds=10)), None),
        (stored(serial=None, attempts=1, last_attempt_at=NOW - timedelta(seconds=31)),
         "no certificate"),
        (stored(serial=None, attempts=3, last_attempt_at=NOW - timedelta(seconds=100)), None),
    ],
)  # fmt: skip
def test_when_a_certificate_is_due(row: StoredCertificate | None, expected: str | None) -> None:
    reason = due(WISH, row, NOW)
    assert (reason is None) == (expected is None), reason
    if expected is not None:
        assert reason is not None and expected in reason


def test_hosts_asking_for_tls_and_their_redirects() -> None:
    routes = [
        Route(host="a.test", port=1, tls=RouteTls()),
        Route(host="a.test", port=1, path_prefix="/x"),
        Route(host="b.test", port=1, tls=RouteTls(redirect_http=False)),
        Route(host="c.test", port=1),
    ]
    hosts = wanted(routes)
    assert set(hosts) == {"a.test", "b.test"} and not hosts["b.test"].redirect_http
    assert redirects(hosts, ["a.test", "b.test"], "0.0.0.0:443") == {"a.test": "https://a.test"}
    assert redirects(hosts, [], "127.0.0.1:8443") == {}, "not before its certificate is served"
    assert redirects(hosts, ["a.test"], "127.0.0.1:8443") == {"a.test": "https://a.test:8443"}


class FakeCertificates:
    def __init__(self) -> None:
        self.rows: dict[str, tuple[StoredCertificate, str | None]] = {}
        self.account: tuple[str, str | None] | None = None
        self.ca: tuple[str, str] | None = None
        self.secrets: dict[str, str] = {}

    def certificates(self) -> dict[str, tuple[StoredCertificate, str | None]]:
        return dict(self.rows)

    def save_certificate(self, fence: Fence, row: dict[str, Any]) -> None:
        facts = StoredCertificate(
            row["host"], row["issuer"], row["serial"], row["not_before"], row["not_after"],
            updated_at=NOW,
        )  # fmt: skip
        self.rows[row["host"]] = (facts, row["certificate_pem"] + row["private_key_pem"])

    def certificate_failed(self, fence: Fence, host: str, issuer: str, error: str) -> None:
        before = self.rows.get(host, (StoredCertificate(host, issuer), None))
        facts = before[0]
        again = StoredCertificate(
            host, issuer, facts.serial, facts.not_before, facts.not_after,
            attempts=facts.attempts + 1, last_attempt_at=NOW, updated_at=facts.updated_at,
        )  # fmt: skip
        self.rows[host] = (again, before[1])

    def forget_certificates(self, fence: Fence, kept: list[str]) -> None:
        self.rows = {h: r for h, r in self.rows.items() if h in kept}

    def acme_account(self, directory_url: str) -> tuple[str, str | None] | None:
        return self.account

    def authority(
        self, fence: Fence, name: str, make: Callable[[], tuple[str, str]]
    ) -> tuple[str, str]:
        if self.ca is None:
            self.ca = make()
        return self.ca

    def secret_values(self, names: list[str]) -> dict[str, str]:
        return {n: v for n, v in self.secrets.items() if n in names}

    def save_acme_account(
        self, fence: Fence, directory_url: str, key: str, uri: str | None
    ) -> None:
        self.account = (key, uri)


class FakeTlsProxy(FakeProxy):
    def __init__(self) -> None:
        super().__init__()
        self.installed: dict[str, str] = {}
        self.challenges: dict[str, str] = {}
        self.redirect_map: dict[str, str] = {}

    def certificates(self) -> dict[str, str]:
        return {host: pem.split("|")[0] for host, pem in self.installed.items()}

    def install_certificate(self, host: str, pem: str) -> None:
        self.installed[host] = pem

    def remove_certificate(self, host: str) -> None:
        del self.installed[host]

    def set_challenge(self, token: str, key_authorization: str) -> None:
        self.challenges[token] = key_authorization

    def clear_challenge(self, token: str) -> None:
        del self.challenges[token]

    def redirects(self) -> dict[str, str]:
        return dict(self.redirect_map)

    def set_redirects(self, redirects: Mapping[str, str]) -> None:
        self.redirect_map = dict(redirects)


class FakeIssuer:
    directory_url = "https://acme.test/dir"

    def new_account_key(self) -> str:
        return "account-key"

    def __init__(self) -> None:
        self.issued = 0
        self.failing = False
        self.seen_challenge = False

    def issue(
        self,
        host: str,
        account: AcmeAccount,
        publish: Callable[[str, str], None],
        withdraw: Callable[[str], None],
    ) -> tuple[IssuedCertificate, AcmeAccount]:
        publish("token", "token.thumbprint")
        withdraw("token")
        if self.failing:
            raise CertificateFailed("ACME: refused")
        self.issued += 1
        serial = f"S{self.issued}"
        issued = IssuedCertificate(f"{serial}|chain", "|key", serial, NOW, NOW + timedelta(days=90))
        return issued, AcmeAccount(account.key_pem, "https://acme.test/acct/1")


class FakeSigner:
    def __init__(self) -> None:
        self.authorities = 0

    def new_authority(self) -> tuple[str, str]:
        self.authorities += 1
        return "CA", "CA-KEY"

    def sign(self, authority: tuple[str, str], host: str) -> IssuedCertificate:
        return IssuedCertificate(
            f"I-{host}|chain", "|key", f"I-{host}", NOW, NOW + timedelta(days=30)
        )

    def check(self, certificate_pem: str, key_pem: str, host: str) -> IssuedCertificate:
        if not certificate_pem.startswith(f"F-{host}"):
            raise CertificateFailed(f"the certificate is not for {host}")
        serial = certificate_pem.split("|")[0]
        return IssuedCertificate(certificate_pem, key_pem, serial, NOW, NOW + timedelta(days=60))


class Leader:
    def __init__(self) -> None:
        self.leading = True

    def fence(self) -> Fence:
        if not self.leading:
            raise Deposed("not the leader")
        return Fence("unit", 1, "node-1", lambda: None)


def keeper(
    routes: list[Route],
) -> tuple[CertificateKeeper, FakeCertificates, FakeTlsProxy, FakeIssuer, Leader]:
    store, proxy, issuer, leader = FakeCertificates(), FakeTlsProxy(), FakeIssuer(), Leader()
    route_keeper = RouteKeeper(proxy)
    route_keeper.repair({"web": (routes, {})}, 0.0)
    certificates = CertificateKeeper(
        store, proxy, issuer, FakeSigner(), route_keeper, leader, "127.0.0.1:8443",
        now=lambda: NOW,
    )  # fmt: skip
    return certificates, store, proxy, issuer, leader


def test_obtained_once_installed_redirected_and_taken_out_when_dropped() -> None:
    routes = [Route(host="web.test", port=1, tls=RouteTls())]
    certificates, store, proxy, issuer, leader = keeper(routes)
    assert certificates.sweep() == {"web.test": "obtained (no certificate yet)"}
    assert proxy.certificates() == {"web.test": "S1"} and issuer.issued == 1
    assert proxy.redirect_map == {"web.test": "https://web.test:8443"}
    assert proxy.challenges == {}, "the challenge is withdrawn after the order"
    assert store.account == ("account-key", "https://acme.test/acct/1")
    assert certificates.sweep() == {}, "nothing due, nothing to install"
    proxy.installed.clear()  # a wiped proxy
    assert certificates.sweep() == {"web.test": "installed in the proxy"}
    leader.leading = False
    assert certificates.sweep() is None
    leader.leading = True
    certificates.routes.repair({"web": ([Route(host="web.test", port=1)], {})}, 0.0)
    assert certificates.sweep() == {"web.test": "removed from the proxy"}
    assert proxy.installed == {} and proxy.redirect_map == {} and store.rows == {}


def test_a_failure_is_recorded_and_waits_its_backoff() -> None:
    routes = [Route(host="web.test", port=1, tls=RouteTls(redirect_http=False))]
    certificates, store, proxy, issuer, _ = keeper(routes)
    issuer.failing = True
    assert certificates.sweep() == {"web.test": "failed: ACME: refused"}
    assert store.rows["web.test"][0].attempts == 1
    assert certificates.sweep() == {}, "within its backoff: not asked again"
    assert proxy.installed == {} and proxy.redirect_map == {}


def test_internal_certificates_share_one_authority() -> None:
    routes = [
        Route(host="a.test", port=1, tls=RouteTls(issuer="internal")),
        Route(host="b.test", port=1, tls=RouteTls(issuer="internal")),
    ]
    certificates, store, proxy, issuer, _ = keeper(routes)
    certificates.sweep()
    assert proxy.certificates() == {"a.test": "I-a.test", "b.test": "I-b.test"}
    assert store.ca == ("CA", "CA-KEY") and issuer.issued == 0
    assert isinstance(certificates.signer, FakeSigner) and certificates.signer.authorities == 1


def test_an_operators_certificate_follows_its_secret() -> None:
    tls = RouteTls(issuer="files", certificate_secret="web-cert", key_secret="web-key")
    certificates, store, proxy, _, _ = keeper([Route(host="web.test", port=1, tls=tls)])
    store.secrets = {"web-cert": "F-web.test-1|chain", "web-key": "|key"}
    certificates.sweep()
    assert proxy.certificates() == {"web.test": "F-web.test-1"}
    store.secrets["web-cert"] = "F-other.test|chain"  # a wrong file: the old one serves on
    assert certificates.sweep() == {
        "web.test": "failed: secrets web-cert and web-key: the certificate is not for web.test"
    }
    assert proxy.certificates() == {"web.test": "F-web.test-1"}
    store.rows["web.test"] = (replace(store.rows["web.test"][0], attempts=0), None)
    store.secrets["web-cert"] = "F-web.test-2|chain"  # the operator's renewal
    certificates.sweep()
    assert proxy.certificates() == {"web.test": "F-web.test-2"}
