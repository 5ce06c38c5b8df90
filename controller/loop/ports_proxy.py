"""The route keeper's port: the reverse proxy's runtime API.

Implemented by `controller.gateways.haproxy.HaproxyGateway` (and the fake proxy of the
unit tests, held to it by tests/integration/contract/test_proxy_contract.py); used by
`controller.loop.routes`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from controller.policy.haproxy import ProxyPlan, ProxyState


class ProxyAdmin(Protocol):
    """The reverse proxy's runtime API (`controller.gateways.haproxy.HaproxyGateway`)."""

    def observe(self) -> ProxyState: ...

    def apply(self, plan: ProxyPlan) -> None: ...

    def in_flight(self, addresses: Collection[str]) -> int: ...
