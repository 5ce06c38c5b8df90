"""Keys and certificates as PEM text: made, read, and written where the proxy reads them.

Used by the ACME issuer (`controller.gateways.acme_issuer`: a host's key, its CSR, the
issued certificate's facts), Berth's own CA (`controller.gateways.internal_ca`: the CA and
the server certificates it signs), the operator's certificates (`check_pair`), by
`berth proxy-config` and the private proxies (the default
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

_CA_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


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
    key = _private_key(key_pem)
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM)


def _builder(
    subject: str, issuer: x509.Name | None, key: ec.EllipticCurvePrivateKey, days: int
) -> x509.CertificateBuilder:
    """A certificate for `subject`'s key, valid from five minutes ago for `days`; issued by
    `issuer` (None: itself)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def self_signed(names: list[str], days: int = 3650, ips: tuple[str, ...] = ()) -> tuple[str, str]:
    """(certificate PEM, key PEM) of a self-signed certificate for these names."""
    import ipaddress

    key_pem = new_key_pem()
    key = _private_key(key_pem)
    alternatives: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alternatives += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    certificate = (
        _builder(names[0], None, key, days)
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return _pem(certificate), key_pem


def new_authority(name: str, days: int = 3650) -> tuple[str, str]:
    """(certificate PEM, key PEM) of a new CA that signs only server certificates."""
    key_pem = new_key_pem()
    key = _private_key(key_pem)
    certificate = (
        _builder(name, None, key, days)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _pem(certificate), key_pem


def sign_server(
    authority_pem: str, authority_key_pem: str, host: str, days: int
) -> tuple[str, str]:
    """(chain PEM: the leaf then the CA, key PEM) of a server certificate for `host`."""
    authority = x509.load_pem_x509_certificate(authority_pem.encode())
    signer = _private_key(authority_key_pem)
    key_pem = new_key_pem()
    certificate = (
        _builder(host, authority.subject, _private_key(key_pem), days)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
        .sign(signer, hashes.SHA256())
    )
    return _pem(certificate) + authority_pem, key_pem


def check_pair(certificate_pem: str, key_pem: str, host: str) -> CertificateFacts:
    """The facts of an operator's certificate, or ValueError saying what is wrong with it
    (unreadable, not for this host, not matching the key, expired). Never quotes the key."""
    try:
        found = facts(certificate_pem)
        leaf = x509.load_pem_x509_certificate(certificate_pem.encode())
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except ValueError as error:
        raise ValueError(f"not a PEM certificate and private key: {error}") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(
        serialization.Encoding.PEM, public
    ) != key.public_key().public_bytes(serialization.Encoding.PEM, public):
        raise ValueError("the private key does not match the certificate")
    if not any(_matches(name, host) for name in found.names):
        raise ValueError(
            f"the certificate is for {', '.join(found.names) or 'no DNS name'}, not {host}"
        )
    if found.not_after <= dt.datetime.now(dt.UTC):
        raise ValueError(f"the certificate expired at {found.not_after:%Y-%m-%d %H:%M}Z")
    return found


def _matches(name: str, host: str) -> bool:
    if name.startswith("*."):
        return host.count(".") == name.count(".") and host.endswith(name[1:])
    return name.lower() == host.lower()


def _private_key(key_pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


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
