"""Berth's own CA and the operator's certificates, as the certificate keeper needs them.

Used by `controller.loop.certificates` (through `controller.loop.ports_tls.CertificateSigner`)
for routes whose `tls.issuer` is `internal` (a server certificate signed by Berth's CA,
valid `SERVER_DAYS`, renewed like any at two thirds of its lifetime; the CA itself is made
once and kept in `certificate_authorities`) or `files` (the certificate and key an operator
put in two secrets, checked: readable, for the host, matching, not expired). Errors are
`CertificateFailed` with what is wrong, never a key.
"""

from __future__ import annotations

from controller.gateways.tls_material import check_pair, facts, new_authority, sign_server
from controller.model.certificates import IssuedCertificate
from controller.model.errors import CertificateFailed

AUTHORITY_NAME = "Berth internal CA"
SERVER_DAYS = 30


class Signer:
    def new_authority(self) -> tuple[str, str]:
        return new_authority(AUTHORITY_NAME)

    def sign(self, authority: tuple[str, str], host: str) -> IssuedCertificate:
        try:
            chain, key = sign_server(authority[0], authority[1], host, SERVER_DAYS)
        except ValueError as error:
            raise CertificateFailed(f"internal CA: {host}: {error}") from error
        found = facts(chain)
        return IssuedCertificate(chain, key, found.serial, found.not_before, found.not_after)

    def check(self, certificate_pem: str, key_pem: str, host: str) -> IssuedCertificate:
        try:
            found = check_pair(certificate_pem, key_pem, host)
        except ValueError as error:
            raise CertificateFailed(str(error)) from None
        return IssuedCertificate(
            certificate_pem, key_pem, found.serial, found.not_before, found.not_after
        )
