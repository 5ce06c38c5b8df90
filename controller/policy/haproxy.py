"""The proxy, decided: HAProxy's static configuration, and the runtime changes that bring a
running HAProxy in line with the routes.

Pure: no I/O. Called by the route keeper (`controller.loop.routes`), which observes the
proxy through `ports.ProxyAdmin`, asks `plan` what to change and hands the plan back to the
gateway (`controller.gateways.haproxy`); and by `berth proxy-config` and the private
proxies of the tests, which write `haproxy_config`.

Why this shape. HAProxy is never reloaded by Berth: a reload moves kept-alive client
connections to a new process (or closes them) and leaves the old one serving the old routes.
Everything that changes is changed through the runtime API, which applies at once and drops
nothing:

- a fixed pool of backends (`berth-route-0` ... `berth-route-N-1`) is declared in the static
  configuration; each route of a deployment is given one of them;
- two maps say which backend serves a request: `berth-exact.map` (host + path, for a prefix
  `/api` the path `/api` itself) and `berth-prefix.map` (host + path prefix ending in `/`,
  longest match wins); a map is replaced as a whole and atomically (prepare, add, commit);
- a backend's servers are the ready replicas' addresses, added (`add server`) before the
  map names the backend, taken out of rotation (`maint`: no new request, the ones in flight
  finish) when a replica leaves, and deleted once no request is in flight to them
  (HAProxy itself refuses to delete a server that still has one).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from controller.policy.routes import RouteTarget

POOL_PREFIX = "berth-route-"
NO_ROUTE_BACKEND = "berth-no-route"
EXACT_MAP = "berth-exact.map"
PREFIX_MAP = "berth-prefix.map"
ACME_MAP = "berth-acme.map"  # ACME http-01 token -> key authorization
REDIRECT_MAP = "berth-redirect.map"  # host -> "https://host[:port]"
MAPS = (EXACT_MAP, PREFIX_MAP, ACME_MAP, REDIRECT_MAP)
CERTIFICATE_LIST = "berth.crtlist"
DEFAULT_CERTIFICATE = "berth-default.pem"
CERTIFICATE_PATH = "/berth/certificates/{host}.pem"  # a name in HAProxy's memory, no file
DEFAULT_POOL_SIZE = 256
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")

Server = tuple[str, str]  # (backend, server name)


@dataclass(frozen=True)
class ProxyServer:
    """One server of a pool backend, as the proxy has it."""

    name: str
    address: str  # "ip:port"
    serving: bool  # in rotation (not in maintenance)
    in_flight: int = 0  # requests being served by it now


@dataclass(frozen=True)
class ProxyState:
    """What the proxy has: its pool, its two maps (key -> backend) and the pool's servers."""

    pool: tuple[str, ...]
    exact: Mapping[str, str] = field(default_factory=dict)
    prefix: Mapping[str, str] = field(default_factory=dict)
    servers: Mapping[str, Mapping[str, ProxyServer]] = field(default_factory=dict)


@dataclass(frozen=True)
class ProxyPlan:
    """What to change, in the order the gateway applies it: servers added or put back in
    rotation, then the maps, then servers taken out of rotation, then servers deleted."""

    add: tuple[tuple[str, str, str], ...] = ()  # (backend, name, address), added serving
    serve: tuple[Server, ...] = ()
    exact: Mapping[str, str] | None = None  # the whole new map; None: unchanged
    prefix: Mapping[str, str] | None = None
    retire: tuple[Server, ...] = ()
    delete: tuple[Server, ...] = ()
    unplaced: tuple[str, ...] = ()  # routes that found no free backend in the pool

    @property
    def empty(self) -> bool:
        """Nothing at all to do (not even an idle retired server to delete)."""
        return not (self.changes or self.delete)

    @property
    def changes(self) -> bool:
        """The proxy's routing changes (deleting an idle retired server does not count)."""
        return bool(self.add or self.serve or self.retire) or (
            self.exact is not None or self.prefix is not None
        )


def server_name(address: str) -> str:
    """A server's name is its address, made safe for HAProxy's names."""
    return "u-" + _UNSAFE.sub("_", address)


def target_keys(target: RouteTarget) -> tuple[str | None, str]:
    """(exact key or None, prefix key) of a route: `web.test/api` and `web.test/api/` for
    the prefix `/api` (as `/api/`), only `web.test/` for `/`."""
    host = target.host.lower()
    trimmed = target.path_prefix.rstrip("/")
    if not trimmed:
        return None, f"{host}/"
    return f"{host}{trimmed}", f"{host}{trimmed}/"


def plan(
    desired: Sequence[RouteTarget], observed: ProxyState, scope: Iterable[str] | None = None
) -> ProxyPlan:
    """The changes that make the proxy serve `desired`. With `scope` (map keys), only those
    keys and the backends they use are touched; every other entry is left as it is (a
    deployment's own change, before or without a view of every route)."""
    in_scope = None if scope is None else frozenset(scope)

    def ours(key: str) -> bool:
        return in_scope is None or key in in_scope

    kept_exact = {k: b for k, b in observed.exact.items() if not ours(k)}
    kept_prefix = {k: b for k, b in observed.prefix.items() if not ours(k)}
    reserved = set(kept_exact.values()) | set(kept_prefix.values())
    pool = [b for b in observed.pool if b not in reserved]

    # In a stable order, so that of two routes claiming one key (two deployments declaring
    # the same host and path) the same one wins every time.
    wanted: list[tuple[RouteTarget, tuple[str | None, str]]] = []
    claimed: set[str] = set()
    for target in sorted(desired, key=lambda t: (t.host, t.path_prefix, t.deployment, t.index)):
        keys = target_keys(target)
        if not all(ours(k) for k in keys if k is not None):
            continue
        if any(k in claimed for k in keys if k is not None):
            continue
        claimed.update(k for k in keys if k is not None)
        wanted.append((target, keys))

    assigned = _assign(wanted, observed, pool)
    unplaced = tuple(t.id for t, _ in wanted if t.id not in assigned)
    exact, prefix = dict(kept_exact), dict(kept_prefix)
    members: dict[str, dict[str, str]] = {}
    for target, (exact_key, prefix_key) in wanted:
        backend = assigned.get(target.id)
        if backend is None:
            continue
        if exact_key is not None:
            exact[exact_key] = backend
        prefix[prefix_key] = backend
        members[backend] = {server_name(a): a for a in target.upstreams}

    touched = set(members)
    if in_scope is None:
        touched |= set(pool)
    else:
        touched |= {b for k, b in (*observed.exact.items(), *observed.prefix.items()) if ours(k)}
        touched -= reserved
    add: list[tuple[str, str, str]] = []
    serve: list[Server] = []
    retire: list[Server] = []
    delete: list[Server] = []
    for backend in sorted(touched, key=_pool_order):
        have = observed.servers.get(backend, {})
        want = members.get(backend, {})
        for name, address in sorted(want.items()):
            server = have.get(name)
            if server is None:
                add.append((backend, name, address))
            elif not server.serving:
                serve.append((backend, name))
        for name, server in sorted(have.items()):
            if name in want:
                continue
            if server.serving:
                retire.append((backend, name))
            if server.in_flight == 0:
                delete.append((backend, name))
    return ProxyPlan(
        add=tuple(add),
        serve=tuple(serve),
        exact=None if exact == dict(observed.exact) else exact,
        prefix=None if prefix == dict(observed.prefix) else prefix,
        retire=tuple(retire),
        delete=tuple(delete),
        unplaced=unplaced,
    )


def _assign(
    wanted: Sequence[tuple[RouteTarget, tuple[str | None, str]]],
    observed: ProxyState,
    pool: Sequence[str],
) -> dict[str, str]:
    """Route id -> backend: a route keeps the backend its keys already name (requests in
    flight and its servers stay where they are); the others take free ones, empty first."""
    available = set(pool)
    assigned: dict[str, str] = {}
    for target, (exact_key, prefix_key) in wanted:
        current = observed.prefix.get(prefix_key)
        if exact_key is not None and observed.exact.get(exact_key) not in (None, current):
            current = None
        if current is not None and current in available:
            assigned[target.id] = current
            available.discard(current)
    free = sorted(available, key=lambda b: (bool(observed.servers.get(b)), _pool_order(b)))
    for target, _ in wanted:
        if target.id not in assigned and free:
            assigned[target.id] = free.pop(0)
    return assigned


def _pool_order(backend: str) -> tuple[int, str]:
    suffix = backend.removeprefix(POOL_PREFIX)
    return (int(suffix), "") if suffix.isdigit() else (1 << 30, backend)


def pool_names(size: int) -> list[str]:
    return [f"{POOL_PREFIX}{i}" for i in range(size)]


def admin_socket_bind(admin_url: str) -> str:
    """HAProxy's `stats socket` address for Berth's admin URL: `unix:///run/x.sock` is a
    socket file only root may use, `tcp://127.0.0.1:9999` a loopback port."""
    if admin_url.startswith("unix://"):
        return f"{admin_url.removeprefix('unix://')} mode 600"
    if admin_url.startswith("tcp://"):
        return f"ipv4@{admin_url.removeprefix('tcp://')}"
    raise ValueError(f"proxy_admin_url: expected unix:///path or tcp://host:port: {admin_url!r}")


REQUEST_LOG_FORMAT = (
    '"%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %HM %HP"'
)


def haproxy_config(
    http_listen: str,
    admin_url: str,
    folder: str,
    pool_size: int = DEFAULT_POOL_SIZE,
    https_listen: str = "",
) -> str:
    """HAProxy's whole static configuration for Berth (written once; Berth changes the rest
    at run time). The files it names in `folder` must exist: the four maps (empty is fine)
    and, with an HTTPS listener, the certificate list (empty is fine) and the default
    certificate served to a client naming a host without one."""
    folder = folder.rstrip("/")
    exact, prefix = f"{folder}/{EXACT_MAP}", f"{folder}/{PREFIX_MAP}"
    acme, redirect = f"{folder}/{ACME_MAP}", f"{folder}/{REDIRECT_MAP}"
    host = "req.hdr(host),field(1,:),lower"
    lines = [
        "# Written by `berth proxy-config`; Berth programs routes through the admin socket.",
        "global",
        f"  stats socket {admin_socket_bind(admin_url)} level admin",
        "  log stderr format raw local0 info",
        "  ssl-default-bind-options ssl-min-ver TLSv1.2",
        "",
        "defaults",
        "  mode http",
        "  log global",
        "  option forwardfor",
        # One line per request that went wrong or was retried, none for the others: the
        # client, server, timers, status, termination state and retries, and the path
        # without its query string (a token in a query stays out of the log); nothing for
        # a connection that sent no request (a port probe, a TCP health check).
        "  option dontlog-normal",
        "  option dontlognull",
        f"  log-format {REQUEST_LOG_FORMAT}",
        # An idle kept-alive client connection is never closed under the client's feet
        # by a stopping process: the next request is answered, with `Connection: close`.
        "  option idle-close-on-response",
        "  timeout connect 2s",
        "  timeout client 60s",
        "  timeout server 60s",
        "  timeout http-request 10s",
        "  timeout http-keep-alive 30s",
        "  timeout queue 10s",
        # Only a request that never reached a server is retried (on another one): a
        # refused connection is always safe to retry, whatever the method.
        "  retries 3",
        "  retry-on conn-failure",
        "  option redispatch 1",
        "  balance roundrobin",
        "",
        "frontend berth",
        f"  bind {http_listen}",
    ]
    if https_listen:
        lines.append(
            f"  bind {https_listen} ssl crt {folder}/{DEFAULT_CERTIFICATE} "
            f"crt-list {folder}/{CERTIFICATE_LIST} alpn http/1.1"
        )
    lines += [
        # ACME http-01: the key authorization of a pending challenge, from the ACME map.
        "  http-request return status 200 content-type text/plain"
        f' lf-string "%[path,field(4,/),map_str({acme})]"'
        " if { path_beg /.well-known/acme-challenge/ }"
        f" {{ path,field(4,/),map_str({acme}) -m found }}",
        # Plain HTTP to a host with a certificate (and redirect_http): to HTTPS.
        f'  http-request redirect prefix "%[{host},map_str({redirect})]" code 308'
        f" if !{{ ssl_fc }} {{ {host},map_str({redirect}) -m found }}",
        "  http-request set-header X-Forwarded-Proto https if { ssl_fc }",
        f'  http-request set-var-fmt(txn.berth_key) "%[{host}]%[path]"',
        f"  http-request set-var(txn.berth_backend) var(txn.berth_key),map_str({exact})",
        f"  http-request set-var(txn.berth_backend) var(txn.berth_key),map_beg({prefix})"
        " unless { var(txn.berth_backend) -m found }",
        "  use_backend %[var(txn.berth_backend)] if { var(txn.berth_backend) -m found }",
        f"  default_backend {NO_ROUTE_BACKEND}",
        "",
        f"backend {NO_ROUTE_BACKEND}",
        '  http-request return status 404 content-type text/plain lf-string "no route\\n"',
    ]
    for backend in pool_names(pool_size):
        lines += [
            "",
            f"backend {backend}",
            '  http-request return status 503 content-type text/plain lf-string "no ready'
            ' replica\\n" if { nbsrv eq 0 }',
        ]
    return "\n".join(lines) + "\n"
