"""An in-memory HAProxy for the route keeper's unit tests: a pool of backends, two maps and
servers, changed by plans the way the real runtime API changes them (a server is added in
rotation, deleted only out of rotation and with nothing in flight). Held to the real
gateway by tests/integration/contract/test_proxy_contract.py."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from controller.model.errors import ProxyRejected, ProxyUnavailable
from controller.policy.haproxy import ProxyPlan, ProxyServer, ProxyState, pool_names


def applied(state: ProxyState, plan: ProxyPlan) -> ProxyState:
    """The state after `plan`, as HAProxy would leave it."""
    servers = {backend: dict(found) for backend, found in state.servers.items()}
    for backend, name, address in plan.add:
        if name in servers.get(backend, {}):
            raise ProxyRejected(f"proxy: add server {backend}/{name}: Already exists")
        servers.setdefault(backend, {})[name] = ProxyServer(name, address, serving=True)
    for backend, name in plan.serve:
        servers[backend][name] = replace(servers[backend][name], serving=True)
    for backend, name in plan.retire:
        servers[backend][name] = replace(servers[backend][name], serving=False)
    for backend, name in plan.delete:
        server = servers[backend][name]
        if server.serving:
            raise ProxyRejected(f"proxy: del server {backend}/{name}: not in maintenance")
        if server.in_flight == 0:
            del servers[backend][name]
    return ProxyState(
        pool=state.pool,
        exact=dict(state.exact if plan.exact is None else plan.exact),
        prefix=dict(state.prefix if plan.prefix is None else plan.prefix),
        servers={backend: found for backend, found in servers.items() if found},
    )


class FakeProxy:
    def __init__(self, pool_size: int = 8) -> None:
        self.state = ProxyState(pool=tuple(pool_names(pool_size)))
        self.calls: list[str] = []
        self.down = False

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down:
            raise ProxyUnavailable("down")

    def observe(self) -> ProxyState:
        self._call("observe")
        return self.state

    def apply(self, plan: ProxyPlan) -> None:
        self._call("apply")
        self.state = applied(self.state, plan)

    def in_flight(self, addresses: Collection[str]) -> int:
        self._call("in_flight")
        return sum(
            s.in_flight
            for found in self.state.servers.values()
            for s in found.values()
            if s.address in addresses
        )

    def busy(self, address: str, requests: int) -> None:
        """Requests now in flight to the server(s) at this address."""
        self.state = replace(
            self.state,
            servers={
                backend: {
                    n: replace(s, in_flight=requests) if s.address == address else s
                    for n, s in found.items()
                }
                for backend, found in self.state.servers.items()
            },
        )

    def serving(self, host: str, path: str = "/") -> list[str]:
        """The addresses a request for host + path would be sent to (round robin over them)."""
        key = f"{host}{path}"
        backend = self.state.exact.get(key)
        if backend is None:
            matches = [k for k in self.state.prefix if key.startswith(k)]
            backend = self.state.prefix[max(matches, key=len)] if matches else None
        if backend is None:
            return []
        found = self.state.servers.get(backend, {})
        return sorted(s.address for s in found.values() if s.serving)
