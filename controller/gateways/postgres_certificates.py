"""Certificates in Postgres: each HTTPS host's certificate and key (`certificates`, the keys
readable only by Berth's role), the ACME account per directory (`acme_accounts`), and what
operators read (`certificate_status`, no keys).

Also Berth's own CA (`certificate_authorities`) and the values of the secrets a `files`
route names. Called by `controller.loop.certificates.CertificateKeeper` (through
`controller.loop.ports_tls.CertificateLog`) on every sweep, and by the CLI (`berth certs`,
`berth cert renew HOST`, `berth cert ca`). The leader's writes are fenced by its term.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from controller.gateways.postgres_pool import Store
from controller.gateways.postgres_sql import queries
from controller.model.certificates import StoredCertificate
from controller.model.records import Fence


class CertificateStore(Store):
    def certificates(self) -> dict[str, tuple[StoredCertificate, str | None]]:
        """Host -> (the row's facts, its PEM bundle: chain then key, None if none yet)."""
        found = {}
        for r in self._run("select_certificates", {}):
            stored = StoredCertificate(
                host=r["host"],
                issuer=r["issuer"],
                serial=r["serial"],
                not_before=r["not_before"],
                not_after=r["not_after"],
                renew_requested_at=r["renew_requested_at"],
                attempts=r["attempts"],
                last_attempt_at=r["last_attempt_at"],
                updated_at=r["updated_at"],
            )
            bundle = None
            if r["certificate_pem"] and r["private_key_pem"]:
                bundle = r["certificate_pem"].strip() + "\n" + r["private_key_pem"].strip() + "\n"
            found[r["host"]] = (stored, bundle)
        return found

    def save_certificate(self, fence: Fence, row: dict[str, Any]) -> None:
        self._fenced("save_certificate", fence, row)

    def certificate_failed(self, fence: Fence, host: str, issuer: str, error: str) -> None:
        self._fenced(
            "certificate_failed", fence, {"host": host, "issuer": issuer, "error": error[:2000]}
        )

    def forget_certificates(self, fence: Fence, kept: list[str]) -> None:
        self._fenced("forget_certificates", fence, {"kept": kept})

    def acme_account(self, directory_url: str) -> tuple[str, str | None] | None:
        rows = self._run("select_acme_account", {"directory_url": directory_url})
        return (rows[0]["account_key_pem"], rows[0]["account_uri"]) if rows else None

    def save_acme_account(
        self, fence: Fence, directory_url: str, key_pem: str, uri: str | None
    ) -> None:
        params = {"directory_url": directory_url, "account_key_pem": key_pem, "account_uri": uri}
        self._fenced("save_acme_account", fence, params)

    def authority(
        self, fence: Fence, name: str, make: Callable[[], tuple[str, str]]
    ) -> tuple[str, str]:
        """(certificate, key) of the CA `name`, made with `make` (and stored) if missing."""
        rows = self._run("select_authority", {"name": name})
        if not rows:
            certificate, key = make()
            params = {"name": name, "certificate_pem": certificate, "private_key_pem": key}
            self._fenced("save_authority", fence, params)
            rows = self._run("select_authority", {"name": name})
        return rows[0]["certificate_pem"], rows[0]["private_key_pem"]

    def authority_certificate(self, name: str) -> str | None:
        rows = self._run("select_authority_certificate", {"name": name})
        return str(rows[0]["certificate_pem"]) if rows else None

    def secret_values(self, names: list[str]) -> dict[str, str]:
        rows = self._run("select_secret_values", {"names": sorted(names)})
        return {str(r["name"]): str(r["value"]) for r in rows}

    def request_renewal(self, host: str) -> bool:
        return bool(self._run("request_renewal", {"host": host}))

    def status(self) -> list[dict[str, Any]]:
        return self._run("select_certificate_status", {})

    def _fenced(self, name: str, fence: Fence, params: dict[str, Any]) -> None:
        def work(conn: psycopg.Connection[Any]) -> None:
            self._fence(conn, fence)
            conn.execute(queries()[name], params)

        self._in_transaction(name, work)
