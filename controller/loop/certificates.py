"""The certificate keeper: every host a `tls` route names has a valid certificate, in the
proxy, renewed before it expires, and its plain HTTP redirected to HTTPS. The certificate
comes from an ACME server (issuer `acme`), Berth's own CA (`internal`) or the operator's
two secrets (`files`).

Scheduled by the daemon every BERTH_CERTIFICATE_INTERVAL_S; does nothing on a follower.
One sweep, level-triggered (observe, decide, act, record):

- observe: the hosts the routes ask TLS for (the route keeper's view, complete once a full
  resync told every route), the `certificates` rows, the proxy's certificates and redirects;
- decide (`controller.policy.certificates`): which certificates are due (none yet, two
  thirds of the lifetime passed, a renewal asked for, a failure's backoff over), which
  redirects the proxy must hold;
- act: obtain the due ones (through ACME, the http-01 answer put in the proxy's ACME map
  for the duration of the order; signed by the CA, made once; read from the secrets and
  checked), put each host's current certificate in the proxy where its
  serial differs (a replacement is atomic: no handshake fails), set the redirects, take out
  the certificates of hosts no route asks for;
- record: the certificate and key in Postgres (fenced by the term), or the failure counted
  with the ACME server's words; `berth_certificate_expiry_timestamp_seconds` per host.

A restarted or wiped proxy gets every certificate back at the next sweep; a failed ACME
order leaves the previous certificate serving until it expires (the alert fires 14 days
before).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from controller.loop.ports import FenceSource
from controller.loop.ports_tls import (
    CertificateIssuer,
    CertificateLog,
    CertificateSigner,
    TlsProxy,
)
from controller.loop.routes import RouteKeeper
from controller.model.certificates import (
    AcmeAccount,
    HostTls,
    IssuedCertificate,
    StoredCertificate,
)
from controller.model.errors import BerthError, CertificateFailed, Deposed
from controller.model.records import Fence
from controller.observability.metrics import CERTIFICATE_EXPIRY, CERTIFICATES_ISSUED
from controller.policy.certificates import due, redirects

log = structlog.get_logger("berth.certificates")


class CertificateKeeper:
    def __init__(
        self,
        store: CertificateLog,
        proxy: TlsProxy | None,
        issuer: CertificateIssuer | None,
        signer: CertificateSigner,
        routes: RouteKeeper,
        leadership: FenceSource,
        https_listen: str,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store, self.proxy, self.issuer, self.signer = store, proxy, issuer, signer
        self.routes, self.leadership = routes, leadership
        self.https_listen = https_listen
        self._now = now
        self._quiet = False  # nothing asked for TLS at the last sweep, and it was all cleaned
        self._shown: set[str] = set()  # hosts with an expiry series

    def sweep(self) -> dict[str, str] | None:
        """One sweep if this replica leads: host -> what was done (None: not leading, or
        failed and logged; the next sweep tries again)."""
        try:
            fence = self.leadership.fence()
        except Deposed:
            return None
        wishes = self.routes.tls_wishes()
        if wishes is None or (not wishes and self._quiet):
            return {}
        try:
            done = self._sweep(fence, wishes)
        except Deposed:
            return None
        except BerthError as error:
            log.warning("certificates not kept", error=str(error))
            return None
        self._quiet = not wishes
        return done

    def _sweep(self, fence: Fence, wishes: dict[str, HostTls]) -> dict[str, str]:
        done: dict[str, str] = {}
        stored = self.store.certificates()
        files = self._operators_files(wishes)
        for host, wish in sorted(wishes.items()):
            offered = files.get(host)
            reason = due(
                wish,
                stored[host][0] if host in stored else None,
                self._now(),
                offered.serial if isinstance(offered, IssuedCertificate) else None,
            )
            if reason is not None:
                done[host] = self._obtain(fence, wish, reason, offered)
        if done:
            stored = self.store.certificates()
        if self.proxy is not None:
            installed = self.proxy.certificates()
            for host in wishes:
                facts, bundle = stored.get(host, (None, None))
                if facts is None or bundle is None or installed.get(host) == facts.serial:
                    continue
                self.proxy.install_certificate(host, bundle)
                installed[host] = facts.serial or ""
                done.setdefault(host, "installed in the proxy")
            wanted_redirects = redirects(wishes, installed, self.https_listen)
            if (wishes or installed) and self.proxy.redirects() != wanted_redirects:
                self.proxy.set_redirects(wanted_redirects)
            for host in set(installed) - set(wishes):
                self.proxy.remove_certificate(host)
                done[host] = "removed from the proxy"
        gone = set(stored) - set(wishes)
        if gone:
            self.store.forget_certificates(fence, sorted(wishes))
        self._record_expiry({h: s for h, (s, _) in stored.items() if h in wishes})
        return done

    def _operators_files(
        self, wishes: dict[str, HostTls]
    ) -> dict[str, IssuedCertificate | CertificateFailed]:
        """Host -> the certificate in the secrets a `files` route names, checked, or what is
        wrong with it (one query for every such host, once a sweep)."""
        named = {
            host: (w.certificate_secret, w.key_secret)
            for host, w in wishes.items()
            if w.issuer == "files" and w.certificate_secret and w.key_secret
        }
        if not named:
            return {}
        values = self.store.secret_values(sorted({n for pair in named.values() for n in pair}))
        found: dict[str, IssuedCertificate | CertificateFailed] = {}
        for host, (certificate, key) in named.items():
            missing = [n for n in (certificate, key) if n not in values]
            try:
                if missing:
                    raise CertificateFailed(f"secret {', '.join(missing)} does not exist")
                found[host] = self.signer.check(values[certificate], values[key], host)
            except CertificateFailed as error:
                found[host] = CertificateFailed(f"secrets {certificate} and {key}: {error}")
        return found

    def _issue(
        self, fence: Fence, wish: HostTls, offered: IssuedCertificate | CertificateFailed | None
    ) -> IssuedCertificate:
        if wish.issuer == "internal":
            authority = self.store.authority(fence, "internal", self.signer.new_authority)
            return self.signer.sign(authority, wish.host)
        if wish.issuer == "files":
            if isinstance(offered, IssuedCertificate):
                return offered
            raise offered or CertificateFailed("no secrets named")
        if self.issuer is None or self.proxy is None:
            raise CertificateFailed("no ACME server or no proxy configured")
        account = self._account(fence)
        issued, account = self.issuer.issue(
            wish.host, account, self.proxy.set_challenge, self.proxy.clear_challenge
        )
        self.store.save_acme_account(fence, self.issuer.directory_url, account.key_pem, account.uri)
        return issued

    def _obtain(
        self,
        fence: Fence,
        wish: HostTls,
        reason: str,
        offered: IssuedCertificate | CertificateFailed | None = None,
    ) -> str:
        """`offered`: for issuer files, what this sweep read from the secrets."""
        log.info("obtaining a certificate", host=wish.host, issuer=wish.issuer, reason=reason)
        try:
            issued = self._issue(fence, wish, offered)
        except Deposed:
            raise
        except BerthError as error:
            self.store.certificate_failed(fence, wish.host, wish.issuer, str(error))
            CERTIFICATES_ISSUED.labels(outcome="failed").inc()
            log.warning("certificate not obtained", host=wish.host, error=str(error))
            return f"failed: {error}"
        self.store.save_certificate(
            fence,
            {
                "host": wish.host,
                "issuer": wish.issuer,
                "certificate_pem": issued.certificate_pem,
                "private_key_pem": issued.private_key_pem,
                "serial": issued.serial,
                "not_before": issued.not_before,
                "not_after": issued.not_after,
            },
        )
        CERTIFICATES_ISSUED.labels(outcome="issued").inc()
        log.info("certificate obtained", host=wish.host, serial=issued.serial,
                 not_after=issued.not_after.isoformat(), reason=reason)  # fmt: skip
        return f"obtained ({reason})"

    def _account(self, fence: Fence) -> AcmeAccount:
        assert self.issuer is not None
        found = self.store.acme_account(self.issuer.directory_url)
        if found is not None:
            return AcmeAccount(found[0], found[1])
        key = self.issuer.new_account_key()
        self.store.save_acme_account(fence, self.issuer.directory_url, key, None)
        return AcmeAccount(key, None)

    def _record_expiry(self, stored: dict[str, StoredCertificate]) -> None:
        shown = set()
        for host, facts in stored.items():
            if facts.not_after is not None:
                CERTIFICATE_EXPIRY.labels(host=host).set(facts.not_after.timestamp())
                shown.add(host)
        for host in self._shown - shown:
            CERTIFICATE_EXPIRY.remove(host)
        self._shown = shown
