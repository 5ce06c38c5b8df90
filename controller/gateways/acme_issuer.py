"""The ACME gateway: a certificate for a host from an ACME server (Let's Encrypt, or any
RFC 8555 server: the tests use Debian's `pebble` on loopback), through the HTTP-01
challenge.

Used by the certificate keeper (`controller.loop.certificates`). Only this module imports
the `acme` library (certbot's, well kept; it signs the JWS requests, polls orders and
finalizes them). The challenge's answer is published by the caller (`publish(token,
key_authorization)`, which puts it in the proxy's ACME map, answered on
`/.well-known/acme-challenge/`) and withdrawn after the order ends, whatever its end. Every
failure is `CertificateFailed` (transient: the keeper retries with the one backoff), with
the server's words.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from acme import challenges, client, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from josepy.jwk import JWKRSA

from controller.gateways.tls_material import csr_pem, facts, new_key_pem
from controller.model.certificates import AcmeAccount, IssuedCertificate
from controller.model.errors import CertificateFailed

ORDER_TIMEOUT_S = 90.0
USER_AGENT = "berth"


def new_account_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


class AcmeIssuer:
    def __init__(self, directory_url: str, ca_bundle: str = "", email: str = "") -> None:
        self.directory_url = directory_url
        self.ca_bundle = ca_bundle
        self.email = email

    def new_account_key(self) -> str:
        return new_account_key_pem()

    def issue(
        self,
        host: str,
        account: AcmeAccount,
        publish: Callable[[str, str], None],
        withdraw: Callable[[str], None],
    ) -> tuple[IssuedCertificate, AcmeAccount]:
        """A new key and a certificate for `host`; the account as it is now (registered)."""
        tokens: list[str] = []
        try:
            acme, account = self._client(account)
            key_pem = new_key_pem()
            order = acme.new_order(csr_pem(key_pem, host))
            for authorization in order.authorizations:
                if authorization.body.status == messages.STATUS_VALID:
                    continue  # validated recently: the server reuses it
                challenge = next(
                    (
                        c
                        for c in authorization.body.challenges
                        if isinstance(c.chall, challenges.HTTP01)
                    ),
                    None,
                )
                if challenge is None:
                    raise CertificateFailed(f"ACME: {host}: the server offers no http-01 challenge")
                response, validation = challenge.response_and_validation(acme.net.key)
                token = challenge.chall.encode("token")
                publish(token, validation)
                tokens.append(token)
                acme.answer_challenge(challenge, response)
            deadline = dt.datetime.now() + dt.timedelta(seconds=ORDER_TIMEOUT_S)
            done = acme.poll_and_finalize(order, deadline=deadline)
        except (errors.Error, messages.Error, OSError, ValueError) as error:
            raise CertificateFailed(f"ACME {self.directory_url}: {host}: {error}") from error
        except Exception as error:  # requests' and josepy's own errors
            raise CertificateFailed(f"ACME {self.directory_url}: {host}: {error}") from error
        finally:
            for token in tokens:
                withdraw(token)
        chain = done.fullchain_pem
        found = facts(chain)
        issued = IssuedCertificate(chain, key_pem, found.serial, found.not_before, found.not_after)
        return issued, account

    def _client(self, account: AcmeAccount) -> tuple[client.ClientV2, AcmeAccount]:
        key = serialization.load_pem_private_key(account.key_pem.encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        jwk = JWKRSA(key=key)
        # acme passes verify_ssl to requests' `verify`, which also takes a CA bundle's path.
        verify: bool = self.ca_bundle or True  # type: ignore[assignment]
        network = client.ClientNetwork(jwk, user_agent=USER_AGENT, verify_ssl=verify)
        directory = client.ClientV2.get_directory(self.directory_url, network)
        acme = client.ClientV2(directory, network)
        registration = messages.NewRegistration.from_data(
            email=self.email or None, terms_of_service_agreed=True
        )
        try:
            account_resource = acme.new_account(registration)
        except errors.ConflictError as existing:  # this key's account exists: use it
            account_resource = messages.RegistrationResource(
                uri=existing.location, body=messages.Registration()
            )
            network.account = account_resource
        return acme, AcmeAccount(account.key_pem, account_resource.uri)
