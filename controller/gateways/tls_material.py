"""Keys and certificates as PEM text: made, read, and written where the proxy reads them.

Used by the ACME issuer (`controller.gateways.acme_issuer`: a host's key, its CSR, the
issued certificate's facts), by `berth proxy-config` and the private proxies (the default
certificate HAProxy needs on its HTTPS listener before any host has one) and by the test
ACME server. Only this module and the ACME issuer import `cryptography`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DEFAULT_CERT_NAME = "berth-default.pem"


@dataclass(frozen=True)
class CertificateFacts:
    serial: str  # hex, upper case, as HAProxy shows it
    not_before: dt.datetime
    not_after: dt.datetime
    names: tuple[str, ...]
    issuer: str


def new_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def csr_pem(key_pem: str, host: str) -> bytes:
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)


def self_signed(names: list[str], days: int = 3650, ips: tuple[str, ...] = ()) -> tuple[str, str]:
    """(certificate PEM, key PEM) of a self-signed certificate for these names."""
    import ipaddress

    key_pem = new_key_pem()
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.UTC)
    alternatives: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alternatives += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def facts(certificate_pem: str) -> CertificateFacts:
    """The first certificate of a PEM chain: serial, validity, names, issuer."""
    certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
    try:
        names = tuple(
            certificate.extensions.get_extension_for_class(
                x509.SubjectAlternativeName
            ).value.get_values_for_type(x509.DNSName)
        )
    except x509.ExtensionNotFound:
        names = ()
    return CertificateFacts(
        serial=f"{certificate.serial_number:X}",
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        names=names,
        issuer=certificate.issuer.rfc4514_string(),
    )


def default_certificate() -> str:
    """The certificate HAProxy serves to a client naming no host it has one for."""
    certificate, key = self_signed(["berth-default.invalid"])
    return certificate + key
