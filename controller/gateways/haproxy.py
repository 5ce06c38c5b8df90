"""The proxy gateway: HAProxy through its runtime API (the admin socket).

Used by the route keeper (`controller.loop.routes`) through `ports.ProxyAdmin`. Only this
module talks to the proxy. Three calls: `observe` (the pool of backends, the two route maps
and the pool's servers with their requests in flight), `apply` (a plan decided by
`controller.policy.haproxy`, in its order: servers added, maps replaced atomically,
servers taken out of rotation, idle ones deleted) and `in_flight` (requests being served by
given upstream addresses, for the drain). Nothing here reloads or restarts HAProxy.

One connection per command (a socket file or a loopback port); HAProxy answers and closes.
An unreachable socket is `ProxyUnavailable` (transient); an answer that is not the
command's success is `ProxyRejected`, with HAProxy's words, except a delete refused because
requests are still in flight: that server is deleted by a later plan.
"""

from __future__ import annotations

import csv
import socket
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager

from controller.model.errors import ProxyRejected, ProxyUnavailable
from controller.observability.metrics import PROXY_DURATION, PROXY_ERRORS
from controller.policy.haproxy import (
    ACME_MAP,
    CERTIFICATE_LIST,
    CERTIFICATE_PATH,
    EXACT_MAP,
    MAPS,
    POOL_PREFIX,
    PREFIX_MAP,
    REDIRECT_MAP,
    ProxyPlan,
    ProxyServer,
    ProxyState,
)

TIMEOUT_S = 3.0
BATCH = 200  # map entries sent per connection (commands joined with ';')
STILL_BUSY = "still has connections"


@contextmanager
def _measured(call: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    except (ProxyUnavailable, ProxyRejected):
        PROXY_ERRORS.labels(call=call).inc()
        raise
    finally:
        PROXY_DURATION.labels(call=call).observe(time.perf_counter() - started)


class HaproxyGateway:
    def __init__(self, admin_url: str) -> None:
        self._address: str | tuple[str, int]
        if admin_url.startswith("unix://"):
            self._family, self._address = socket.AF_UNIX, admin_url.removeprefix("unix://")
        elif admin_url.startswith("tcp://"):
            host, _, port = admin_url.removeprefix("tcp://").rpartition(":")
            self._family, self._address = socket.AF_INET, (host, int(port))
        else:
            raise ValueError(
                f"proxy_admin_url: expected unix:///path or tcp://host:port: {admin_url!r}"
            )
        self.admin_url = admin_url

    # --- the three calls ----------------------------------------------------------------------
    def observe(self) -> ProxyState:
        with _measured("observe"):
            pool = tuple(
                name
                for name in self._send("show backend").splitlines()
                if name.startswith(POOL_PREFIX)
            )
            maps = self._map_paths()
            servers: dict[str, dict[str, ProxyServer]] = {}
            for row in self._stats():
                backend, name = row.get("# pxname", ""), row.get("svname", "")
                if not backend.startswith(POOL_PREFIX) or name in ("BACKEND", "FRONTEND", ""):
                    continue
                servers.setdefault(backend, {})[name] = ProxyServer(
                    name=name,
                    address=row.get("addr", ""),
                    serving=not row.get("status", "").startswith("MAINT"),
                    in_flight=int(row.get("scur") or 0),
                )
            return ProxyState(
                pool=pool,
                exact=self._map(maps[EXACT_MAP]),
                prefix=self._map(maps[PREFIX_MAP]),
                servers=servers,
            )

    def apply(self, plan: ProxyPlan) -> None:
        with _measured("apply"):
            for backend, name, address in plan.add:
                self._expect(f"add server {backend}/{name} {address}", "New server registered")
                self._expect(f"set server {backend}/{name} state ready", "")
            for backend, name in plan.serve:
                self._expect(f"set server {backend}/{name} state ready", "")
            maps = self._map_paths()
            if plan.exact is not None:
                self._replace_map(maps[EXACT_MAP], plan.exact)
            if plan.prefix is not None:
                self._replace_map(maps[PREFIX_MAP], plan.prefix)
            for backend, name in plan.retire:
                self._expect(f"set server {backend}/{name} state maint", "")
            for backend, name in plan.delete:
                answer = self._send(f"del server {backend}/{name}")
                if "Server deleted" not in answer and STILL_BUSY not in answer:
                    raise ProxyRejected(f"proxy: del server {backend}/{name}: {answer.strip()}")

    def in_flight(self, addresses: Collection[str]) -> int:
        """Requests being served now by servers at these addresses (in any pool backend)."""
        with _measured("in_flight"):
            return sum(
                int(row.get("scur") or 0)
                for row in self._stats()
                if row.get("# pxname", "").startswith(POOL_PREFIX)
                and row.get("svname") not in ("BACKEND", "FRONTEND")
                and row.get("addr") in addresses
            )

    # --- certificates, ACME challenges, redirects (the certificate keeper's) -----------------
    def certificates(self) -> dict[str, str]:
        """Host -> serial of each certificate in Berth's certificate list (empty without
        an HTTPS listener)."""
        with _measured("observe"):
            listed = self._certificate_list()
            if listed is None:
                return {}
            found = {}
            for line in self._send(f"show ssl crt-list {listed}").splitlines():
                path = line.split()[0] if line.strip() and not line.startswith("#") else ""
                host = _host_of(path)
                if host is None:
                    continue
                for detail in self._send(f"show ssl cert {path}").splitlines():
                    if detail.startswith("Serial:"):
                        found[host] = detail.split(":", 1)[1].strip().lstrip("0") or "0"
            return found

    def install_certificate(self, host: str, pem: str) -> None:
        """A host's certificate (chain and key, PEM) served from now on: a new one added to
        the list, an existing one replaced atomically (handshakes in flight finish)."""
        with _measured("apply"):
            listed = self._certificate_list()
            if listed is None:
                raise ProxyRejected("proxy: no HTTPS listener (BERTH_PROXY_HTTPS_ADDR)")
            path = CERTIFICATE_PATH.format(host=host)
            known = path in self._send("show ssl cert")
            if not known:
                self._expect(f"new ssl cert {path}", "New empty certificate store")
            self._expect(f"set ssl cert {path} <<\n{pem.strip()}\n", "Transaction")
            self._expect(f"commit ssl cert {path}", "Success")
            if path not in self._send(f"show ssl crt-list {listed}"):
                self._expect(f"add ssl crt-list {listed} {path}", "Success")

    def remove_certificate(self, host: str) -> None:
        with _measured("apply"):
            listed = self._certificate_list()
            path = CERTIFICATE_PATH.format(host=host)
            if listed is not None and path in self._send(f"show ssl crt-list {listed}"):
                self._expect(f"del ssl crt-list {listed} {path}", "deleted")
            if path in self._send("show ssl cert"):
                self._expect(f"del ssl cert {path}", "deleted")

    def set_challenge(self, token: str, key_authorization: str) -> None:
        with _measured("apply"):
            path = self._map_paths(ACME_MAP)[ACME_MAP]
            self._expect(f"add map {path} {token} {key_authorization}", "")

    def clear_challenge(self, token: str) -> None:
        with _measured("apply"):
            self._send(f"del map {self._map_paths(ACME_MAP)[ACME_MAP]} {token}")

    def redirects(self) -> dict[str, str]:
        with _measured("observe"):
            return self._map(self._map_paths(REDIRECT_MAP)[REDIRECT_MAP])

    def set_redirects(self, redirects: Mapping[str, str]) -> None:
        with _measured("apply"):
            self._replace_map(self._map_paths(REDIRECT_MAP)[REDIRECT_MAP], redirects)

    def _certificate_list(self) -> str | None:
        for line in self._send("show ssl crt-list").splitlines():
            if line.strip().endswith(CERTIFICATE_LIST):
                return line.strip()
        return None

    # --- the runtime API ----------------------------------------------------------------------
    def _send(self, command: str) -> str:
        try:
            with socket.socket(self._family, socket.SOCK_STREAM) as connection:
                connection.settimeout(TIMEOUT_S)
                connection.connect(self._address)
                connection.sendall(command.encode() + b"\n")
                chunks = []
                while chunk := connection.recv(65536):
                    chunks.append(chunk)
        except OSError as error:
            raise ProxyUnavailable(f"proxy admin socket {self.admin_url}: {error}") from error
        return b"".join(chunks).decode(errors="replace")

    def _expect(self, command: str, success: str) -> str:
        answer = self._send(command)
        if (success and success not in answer) or (not success and answer.strip()):
            raise ProxyRejected(f"proxy: {command}: {answer.strip()[:200]}")
        return answer

    def _stats(self) -> list[dict[str, str]]:
        text = self._send("show stat")
        return list(csv.DictReader(line for line in text.splitlines() if line))

    def _map_paths(self, *needed: str) -> dict[str, str]:
        """Each of Berth's maps (by file name) -> the path HAProxy knows it by; those
        `needed` must be there (routes need two; a configuration written by an older
        `berth proxy-config` still routes, and says what TLS lacks)."""
        paths = {}
        for line in self._send("show map").splitlines():
            if "(" in line and ")" in line:
                path = line[line.index("(") + 1 : line.index(")")]
                for name in MAPS:
                    if path.endswith("/" + name) or path == name:
                        paths[name] = path
        missing = [name for name in (needed or (EXACT_MAP, PREFIX_MAP)) if name not in paths]
        if missing:
            raise ProxyRejected(
                f"proxy: its configuration lacks Berth's maps {', '.join(missing)}: "
                "write it again with `berth proxy-config` and restart it"
            )
        return paths

    def _map(self, path: str) -> dict[str, str]:
        entries = {}
        for line in self._send(f"show map {path}").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0].startswith("0x"):
                entries[parts[1]] = parts[2]
        return entries

    def _replace_map(self, path: str, entries: Mapping[str, str]) -> None:
        """The whole map at once: a new version filled, then committed atomically."""
        answer = self._expect(f"prepare map {path}", "New version created:")
        version = answer.strip().rsplit(":", 1)[1].strip()
        commands = [f"add map @{version} {path} {key} {value}" for key, value in entries.items()]
        for start in range(0, len(commands), BATCH):
            self._expect(";".join(commands[start : start + BATCH]), "")
        self._expect(f"commit map @{version} {path}", "")


def _host_of(path: str) -> str | None:
    prefix, suffix = CERTIFICATE_PATH.split("{host}")
    if path.startswith(prefix) and path.endswith(suffix):
        return path[len(prefix) : len(path) - len(suffix)]
    return None
