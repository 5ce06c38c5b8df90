"""The certificate keeper's ports: the proxy's TLS side, the certificates in Postgres, an ACME
server and the signer of Berth's own CA. Implemented by
`controller.gateways.haproxy.HaproxyGateway`,
`controller.gateways.postgres_certificates.CertificateStore`,
`controller.gateways.acme_issuer.AcmeIssuer` and `controller.gateways.internal_ca.Signer`;
used by `controller.loop.certificates`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from controller.model.certificates import AcmeAccount, IssuedCertificate, StoredCertificate
from controller.model.records import Fence


class TlsProxy(Protocol):
    """The proxy's certificates, ACME challenges and redirects
    (`controller.gateways.haproxy.HaproxyGateway`)."""

    def certificates(self) -> dict[str, str]: ...

    def install_certificate(self, host: str, pem: str) -> None: ...

    def remove_certificate(self, host: str) -> None: ...

    def set_challenge(self, token: str, key_authorization: str) -> None: ...

    def clear_challenge(self, token: str) -> None: ...

    def redirects(self) -> dict[str, str]: ...

    def set_redirects(self, redirects: Mapping[str, str]) -> None: ...


class CertificateLog(Protocol):
    """Certificates and the ACME account in Postgres
    (`controller.gateways.postgres_certificates.CertificateStore`)."""

    def certificates(self) -> dict[str, tuple[StoredCertificate, str | None]]: ...

    def save_certificate(self, fence: Fence, row: dict[str, Any]) -> None: ...

    def certificate_failed(self, fence: Fence, host: str, issuer: str, error: str) -> None: ...

    def forget_certificates(self, fence: Fence, kept: list[str]) -> None: ...

    def acme_account(self, directory_url: str) -> tuple[str, str | None] | None: ...

    def authority(
        self, fence: Fence, name: str, make: Callable[[], tuple[str, str]]
    ) -> tuple[str, str]: ...

    def secret_values(self, names: list[str]) -> dict[str, str]: ...

    def save_acme_account(
        self, fence: Fence, directory_url: str, key_pem: str, uri: str | None
    ) -> None: ...


class CertificateSigner(Protocol):
    """Berth's own CA and operators' certificates (`controller.gateways.internal_ca`)."""

    def new_authority(self) -> tuple[str, str]: ...

    def sign(self, authority: tuple[str, str], host: str) -> IssuedCertificate: ...

    def check(self, certificate_pem: str, key_pem: str, host: str) -> IssuedCertificate: ...


class CertificateIssuer(Protocol):
    """An ACME server (`controller.gateways.acme_issuer.AcmeIssuer`)."""

    directory_url: str

    def new_account_key(self) -> str: ...

    def issue(
        self,
        host: str,
        account: AcmeAccount,
        publish: Callable[[str, str], None],
        withdraw: Callable[[str], None],
    ) -> tuple[IssuedCertificate, AcmeAccount]: ...
