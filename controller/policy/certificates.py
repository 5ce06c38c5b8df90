"""Certificates, decided: which hosts need one, when one is due, what the proxy must hold.

Pure: no I/O. Called by the certificate keeper (`controller.loop.certificates`) on every
sweep. A host needs a certificate when any route for it asks for `tls`; it is redirected
from HTTP to HTTPS when any of those routes keeps `redirect_http` (the default) and only
once its certificate is in the proxy (a redirect to a host without one would fail every
client). A certificate is due when there is none, when two thirds of its lifetime have
passed (Let's Encrypt's advice: 30 days before a 90-day certificate ends), when an operator
asked for a renewal since it was issued; a failed attempt waits the one backoff. An
operator's certificate (issuer `files`) is due when its secret holds another one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from controller.model.certificates import HostTls, StoredCertificate
from controller.model.spec import Route
from controller.policy.backoff import backoff_s

RETRY_BASE_S = 30.0
RETRY_MAX_S = 3600.0


def wanted(routes: Iterable[Route]) -> dict[str, HostTls]:
    """Host -> what its routes ask for (any route asking for TLS makes the host HTTPS; the
    first such route names the issuer, any of them the redirect)."""
    hosts: dict[str, HostTls] = {}
    for route in routes:
        if route.tls is None:
            continue
        before = hosts.get(route.host)
        tls = route.tls
        if before is None:
            hosts[route.host] = HostTls(
                route.host, tls.issuer, tls.redirect_http, tls.certificate_secret, tls.key_secret
            )
        elif tls.redirect_http and not before.redirect_http:
            hosts[route.host] = replace(before, redirect_http=True)
    return hosts


def due(
    wish: HostTls, stored: StoredCertificate | None, now: datetime, offered: str | None = None
) -> str | None:
    """Why a certificate must be obtained now (None: not now). `offered`: for issuer
    `files`, the serial of the certificate in the operator's secret (None: unreadable),
    taken as soon as it differs from the one stored: the operator's new file is the
    renewal."""
    if stored is not None and stored.attempts > 0 and stored.last_attempt_at is not None:
        wait = timedelta(seconds=backoff_s(stored.attempts, RETRY_BASE_S, RETRY_MAX_S))
        if now < stored.last_attempt_at + wait:
            return None
    if stored is None or stored.serial is None:
        return "no certificate yet"
    if stored.issuer != wish.issuer:
        return f"issuer changed to {wish.issuer}"
    if wish.issuer == "files":
        return None if offered == stored.serial else "the secret holds another certificate"
    if stored.renew_requested_at is not None and (
        stored.updated_at is None or stored.renew_requested_at >= stored.updated_at
    ):
        return "renewal requested"
    renew_after = stored.renew_after
    if renew_after is not None and now >= renew_after:
        return f"two thirds of its lifetime passed (renew after {renew_after:%Y-%m-%d %H:%M}Z)"
    return None


def redirects(
    hosts: Mapping[str, HostTls], installed: Iterable[str], https_listen: str
) -> dict[str, str]:
    """Host -> the HTTPS prefix its plain HTTP requests are redirected to."""
    port = https_listen.rpartition(":")[2]
    suffix = "" if port == "443" else f":{port}"
    present = set(installed)
    return {
        host: f"https://{host}{suffix}"
        for host, wish in hosts.items()
        if wish.redirect_http and host in present
    }
