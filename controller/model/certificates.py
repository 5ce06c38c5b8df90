"""Certificates as values: what a host's routes ask for, a stored certificate's facts, an
ACME account and a certificate just issued.

Shared by the decisions (`controller.policy.certificates`), the certificate keeper
(`controller.loop.certificates`) and the gateways that store and obtain them
(`controller.gateways.postgres_certificates`, `controller.gateways.acme_issuer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class HostTls:
    host: str
    issuer: str  # acme, internal or files
    redirect_http: bool
    certificate_secret: str | None = None  # files: the secrets holding the chain and key
    key_secret: str | None = None


@dataclass(frozen=True)
class StoredCertificate:
    """A `certificates` row (the key is the gateway's business, not a decision's)."""

    host: str
    issuer: str
    serial: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    renew_requested_at: datetime | None = None
    attempts: int = 0
    last_attempt_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def renew_after(self) -> datetime | None:
        if self.not_before is None or self.not_after is None:
            return None
        return self.not_before + (self.not_after - self.not_before) * 2 / 3


@dataclass(frozen=True)
class AcmeAccount:
    key_pem: str
    uri: str | None


@dataclass(frozen=True)
class IssuedCertificate:
    certificate_pem: str  # the full chain
    private_key_pem: str
    serial: str
    not_before: datetime
    not_after: datetime
