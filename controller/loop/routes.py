"""The route keeper: the proxy in line with deployments' routes and their ready replicas.

Shared by the reconciler (`publish` at the end of a pass: the ready replicas of the
deployment serve its routes), the executor (`withdraw` before any container of a routed
deployment is stopped or removed, then `drain`: no request is left in flight to it) and the
full resync (`repair`: the proxy's whole state compared with the desired one, so that a
restarted or wiped proxy is programmed again within one resync interval).

Every change observes the proxy, asks `controller.policy.haproxy.plan` what to change and
hands the plan to the proxy (`ports.ProxyAdmin`): a pass's change is scoped to its own
deployment's routes (nothing else is touched, so it needs no view of every route), a
resync's covers everything. Nothing is reloaded: servers and maps change at run time, a
leaving replica is taken out of rotation and its requests in flight finish.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from controller.loop.ports_proxy import ProxyAdmin
from controller.model.certificates import HostTls
from controller.model.errors import BerthError, ProxyUnavailable
from controller.model.replicas import ObservedReplica
from controller.model.spec import Route
from controller.policy.certificates import wanted
from controller.policy.haproxy import plan, target_keys
from controller.policy.routes import RouteTarget, members, targets

log = structlog.get_logger("berth.routes")
Members = Mapping[str, Mapping[int, str]]  # container id -> {container port: "ip:port"}
WITHDRAWN_KEPT_S = 3600.0  # a withdrawn container is long gone by then
DRAIN_POLL_S = 0.01
DRAIN_FLOOR_S = 0.1
NO_PROXY = "no proxy configured (BERTH_PROXY_ADMIN_URL is empty)"


@dataclass(frozen=True)
class Drained:
    """How a drain ended: the seconds waited, and the requests the proxy still counted in
    flight to the leaving upstreams (0: every one answered; more: the drain reached its
    limit and stopping them may cut those; None: the proxy could not say)."""

    waited_s: float
    in_flight: int | None

    def report(self, leaving: int, limit_s: float) -> tuple[str, str]:
        """The drain's event: its message and level (a warning when requests were still in
        flight at its limit: stopping the replicas may cut them)."""
        done = f"{leaving} container(s) out of the routes; drained in {self.waited_s:.2f}s"
        if self.in_flight:
            return (
                f"{done}, its limit (rollout.drain_s {limit_s:g}s), with {self.in_flight} "
                "request(s) still in flight to them: stopping them may cut those",
                "warning",
            )
        unknown = "; the proxy could not say what was in flight" if self.in_flight is None else ""
        return f"{done} (at most {limit_s:g}s){unknown}", "info"


@dataclass(frozen=True)
class Published:
    changed: bool  # the proxy was changed by this call
    problem: str | None = None  # why the proxy could not be updated (it is unreachable)


class RouteKeeper:
    def __init__(self, proxy: ProxyAdmin | None) -> None:
        self.proxy = proxy
        self._lock = threading.Lock()
        self._routes: dict[str, tuple[Route, ...]] = {}
        self._members: dict[str, dict[str, dict[int, str]]] = {}
        self._unsynced: set[str] = set()  # deployments whose last push failed
        # When each deployment's entry was last set by a pass (monotonic): a full resync's
        # view, listed before that, is older and must not undo it (a replica withdrawn
        # and removed meanwhile would be routed to again).
        self._set_at: dict[str, float] = {}
        # Containers taken out of the routes to be stopped (monotonic time): never routed to
        # again, though a list taken during their drain still shows them ready.
        self._withdrawn: dict[str, float] = {}
        self._emptied = False  # the proxy was emptied since the last routed deployment
        self._told_all = False  # a full resync has told every deployment's routes

    def routed(self, deployment: str) -> bool:
        with self._lock:
            return bool(self._routes.get(deployment))

    def serve(
        self, deployment: str, routes: Sequence[Route], containers: Iterable[ObservedReplica]
    ) -> Published:
        """A pass's view: its ready containers serve its routes (none if it has none)."""
        if not routes and not self.routed(deployment):
            return Published(False)
        return self.publish(deployment, routes, members(routes, containers))

    # --- a pass ------------------------------------------------------------------------------
    def publish(self, deployment: str, routes: Sequence[Route], served_by: Members) -> Published:
        """These replicas now serve the deployment's routes; push what changed."""
        with self._lock:
            wanted = self._routable(served_by)
            old_routes = self._routes.get(deployment, ())
            unchanged = tuple(routes) == old_routes and wanted == self._members.get(deployment)
            if unchanged and deployment not in self._unsynced:
                return Published(False)
            self._routes[deployment] = tuple(routes)
            self._members[deployment] = wanted
            self._set_at[deployment] = time.monotonic()
            if not routes and not old_routes:
                return Published(False)
            return self._push(deployment, old_routes)

    def withdraw(
        self, deployment: str, container_ids: Iterable[str], for_good: Iterable[str] = ()
    ) -> frozenset[str]:
        """Take these containers out of the deployment's routes before they stop (those
        `for_good` are removed: never routed to again; the others restart and come back
        once ready). Returns the upstream addresses taken out of the proxy (the caller then
        drains them); empty when the proxy did not change."""
        removed = set(for_good)
        container_ids = [*container_ids, *removed]
        with self._lock:
            members = self._members.get(deployment)
            leaving = [cid for cid in container_ids if members and cid in members]
            if not leaving or not self._routes.get(deployment):
                return frozenset()
            assert members is not None
            now = time.monotonic()
            addresses = frozenset(a for cid in leaving for a in members[cid].values())
            for cid in leaving:
                del members[cid]
                if cid in removed:
                    self._withdrawn[cid] = now
            self._set_at[deployment] = time.monotonic()
            routes = self._routes[deployment]
            return addresses if self._push(deployment, routes).changed else frozenset()

    def drain(self, addresses: frozenset[str], max_s: float, stopping: threading.Event) -> Drained:
        """Wait until the proxy has no request in flight to these upstreams, at most
        `max_s` (the whole of it when the proxy cannot say); how long, and what the proxy
        still counted in flight when the wait ended."""
        started = time.monotonic()
        deadline = started + max_s
        # A request the old configuration accepted just before the change may not have
        # picked its upstream yet (not counted): a moment first, then the count.
        stopping.wait(min(max_s, DRAIN_FLOOR_S))
        while True:
            try:
                left = 0 if self.proxy is None else self.proxy.in_flight(addresses)
            except BerthError:
                stopping.wait(max(0.0, deadline - time.monotonic()))
                return Drained(time.monotonic() - started, None)
            if left == 0 or time.monotonic() >= deadline or stopping.is_set():
                return Drained(time.monotonic() - started, left)
            stopping.wait(DRAIN_POLL_S)

    def forget(self, deployment: str) -> None:
        """A deleted deployment: its routes go (the 404 route answers for them)."""
        with self._lock:
            had = self._routes.pop(deployment, ())
            self._members.pop(deployment, None)
            self._set_at[deployment] = time.monotonic()
            if had:
                self._push(deployment, had)

    # --- the full resync -----------------------------------------------------------------------
    def repair(
        self, desired: Mapping[str, tuple[Sequence[Route], Members]], listed_at: float
    ) -> bool:
        """Every deployment's routes and serving replicas, as the resync saw them at
        `listed_at` (monotonic): the proxy's whole state is compared with the desired one
        and changed where it differs. A deployment a pass has set since keeps the pass's
        (newer) view. True when the proxy's routing changed."""
        with self._lock:
            newer = {name for name, at in self._set_at.items() if at > listed_at}
            routes = {name: tuple(r) for name, (r, _) in desired.items() if r and name not in newer}
            members = {
                name: self._routable(served)
                for name, (r, served) in desired.items()
                if r and name not in newer
            }
            for name in newer:
                if self._routes.get(name):
                    routes[name] = self._routes[name]
                    members[name] = self._members.get(name, {})
            self._routes, self._members = routes, members
            self._told_all = True
            self._unsynced.clear()
            if self.proxy is None:
                if self._routes:
                    raise ProxyUnavailable(NO_PROXY)
                return False
            if not self._routes:
                # Nothing routed: the proxy is emptied once (a predecessor's leftovers), then
                # left alone, so that a machine without a proxy is not told so every resync.
                if self._emptied:
                    return False
                self._emptied = True
            else:
                self._emptied = False
            everything = [t for name in sorted(self._routes) for t in self._targets(name)]
            changes = plan(everything, self.proxy.observe())
            if not changes.empty:
                self.proxy.apply(changes)
            if changes.unplaced:
                log.warning(
                    "routes without a backend: the proxy's pool is full",
                    routes=list(changes.unplaced),
                )
            if changes.changes:
                log.info("proxy re-programmed", routes=len(everything))
            return changes.changes

    def tls_wishes(self) -> dict[str, HostTls] | None:
        """Host -> what its routes ask of TLS; None until a full resync told every route."""
        with self._lock:
            if not self._told_all:
                return None
            return wanted(route for routes in self._routes.values() for route in routes)

    def _routable(self, served_by: Members) -> dict[str, dict[int, str]]:
        """Under the lock: the serving replicas minus those withdrawn to be stopped."""
        now = time.monotonic()
        for cid, at in list(self._withdrawn.items()):
            if now - at > WITHDRAWN_KEPT_S:
                del self._withdrawn[cid]
        return {cid: dict(a) for cid, a in served_by.items() if cid not in self._withdrawn}

    # --- pushing -------------------------------------------------------------------------------
    def _targets(self, deployment: str) -> list[RouteTarget]:
        return targets(
            deployment, self._routes.get(deployment, ()), self._members.get(deployment, {})
        )

    def _push(self, deployment: str, old_routes: Sequence[Route]) -> Published:
        """Under the lock: this deployment's routes (its old ones, `old_routes`, and its
        new ones) brought in line; nothing else in the proxy is touched."""
        if self.proxy is None:
            return Published(False, NO_PROXY)
        desired = self._targets(deployment)
        old = targets(deployment, old_routes, {})
        scope = {k for t in (*desired, *old) for k in target_keys(t) if k is not None}
        try:
            changes = plan(desired, self.proxy.observe(), scope)
            if not changes.empty:
                self.proxy.apply(changes)
        except BerthError as error:
            self._unsynced.add(deployment)
            log.warning("proxy not updated", deployment=deployment, error=str(error))
            return Published(False, str(error))
        if changes.unplaced:
            self._unsynced.add(deployment)
            return Published(
                changes.changes,
                "the proxy's pool of backends is full: declare more in its "
                "configuration (berth proxy-config --pool-size)",
            )
        self._unsynced.discard(deployment)
        return Published(changes.changes)
