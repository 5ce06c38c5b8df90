"""The route keeper: the proxy in line with deployments' routes and their ready replicas.

Shared by the reconciler (`publish` at the end of a pass: the ready replicas of the
deployment serve its routes), the executor (`withdraw` before any container of a routed
deployment is stopped or removed, then the drain wait) and the full resync (`repair`:
the proxy's whole configuration compared with the desired one and reloaded on drift, so a
restarted or wiped proxy is re-programmed within one resync interval). A change of
replicas replaces only the affected route's handlers (`ProxyGateway.set_handlers`); a
change of the set of routes reloads the configuration, gracefully. The decisions are
`controller.policy.routes`; the proxy is reached only through `ports.ProxyAdmin`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import structlog

from controller.loop.ports import ProxyAdmin
from controller.model.errors import BerthError, ProxyUnavailable
from controller.model.replicas import ObservedReplica
from controller.model.spec import Route
from controller.policy.routes import RouteTarget, caddy_config, handlers, members, targets

log = structlog.get_logger("berth.routes")
Members = Mapping[str, Mapping[int, str]]  # container id -> {container port: "ip:port"}
WITHDRAWN_KEPT_S = 3600.0  # a withdrawn container is long gone by then
DRAIN_POLL_S = 0.01
# Caddy applies every change as a graceful reload; two reloads a few milliseconds apart
# can reset a client connection accepted between them (seen under load: one in ~14,000
# requests). Changes are spaced by at least this much.
MIN_CHANGE_INTERVAL_S = 0.15
DRAIN_FLOOR_S = 0.1


@dataclass(frozen=True)
class Published:
    changed: bool  # the proxy was changed by this call
    problem: str | None = None  # why the proxy could not be updated (it is unreachable)


class RouteKeeper:
    def __init__(self, proxy: ProxyAdmin | None, http_listen: str) -> None:
        self.proxy = proxy
        self.http_listen = http_listen
        self._lock = threading.Lock()
        self._routes: dict[str, tuple[Route, ...]] = {}
        self._members: dict[str, dict[str, dict[int, str]]] = {}
        self._complete = False  # a full resync has told every deployment's routes
        self._unsynced: set[str] = set()  # deployments whose last push failed
        # When each deployment's entry was last set by a pass (monotonic): a full resync's
        # view, listed before that, is older and must not undo it (a replica withdrawn
        # and removed meanwhile would be routed to again).
        self._set_at: dict[str, float] = {}
        # Containers taken out of the routes to be stopped (monotonic time): never routed to
        # again, though a list taken during their drain still shows them ready.
        self._withdrawn: dict[str, float] = {}
        self._changed_at = -MIN_CHANGE_INTERVAL_S
        self._emptied = False  # the proxy was emptied since the last routed deployment

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
            return self._push(deployment, structural=tuple(routes) != old_routes or unchanged)

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
            return addresses if self._push(deployment, structural=False).changed else frozenset()

    def drain(self, addresses: frozenset[str], max_s: float, stopping: threading.Event) -> float:
        """Wait until the proxy has no request in flight to these upstreams, at most
        `max_s` (the whole of it when the proxy cannot say); the seconds waited."""
        started = time.monotonic()
        deadline = started + max_s
        # A request the old configuration accepted just before the change may not have
        # picked its upstream yet (not counted): a moment first, then the count.
        stopping.wait(min(max_s, DRAIN_FLOOR_S))
        while time.monotonic() < deadline and not stopping.is_set():
            try:
                if self.proxy is None or self.proxy.in_flight(addresses) == 0:
                    break
            except BerthError:
                stopping.wait(max(0.0, deadline - time.monotonic()))
                break
            stopping.wait(DRAIN_POLL_S)
        return time.monotonic() - started

    def forget(self, deployment: str) -> None:
        """A deleted deployment: its routes go (the 404 route answers for them)."""
        with self._lock:
            had = bool(self._routes.pop(deployment, ()))
            self._members.pop(deployment, None)
            self._set_at[deployment] = time.monotonic()
            if had:
                self._push(deployment, structural=True)

    # --- the full resync -----------------------------------------------------------------------
    def repair(
        self, desired: Mapping[str, tuple[Sequence[Route], Members]], listed_at: float
    ) -> bool:
        """Every deployment's routes and serving replicas, as the resync saw them at
        `listed_at` (monotonic): the proxy's configuration is compared with the desired one
        and reloaded if it differs. A deployment a pass has set since keeps the pass's
        (newer) view. True when the proxy was reloaded."""
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
            self._complete = True
            self._unsynced.clear()
            if self.proxy is None:
                if self._routes:
                    raise ProxyUnavailable("no proxy configured (BERTH_PROXY_ADMIN_URL is empty)")
                return False
            if not self._routes:
                # Nothing routed: the proxy is emptied once (a predecessor's leftovers), then
                # left alone, so that a machine without a proxy is not told so every resync.
                if self._emptied:
                    return False
                self._emptied = True
            else:
                self._emptied = False
            config = self._config()
            if self.proxy.current() == config:
                return False
            self._space_changes()
            self.proxy.load(config)
            log.info("proxy configuration reloaded", routes=sum(map(len, self._routes.values())))
            return True

    def _space_changes(self) -> None:
        """Under the lock: wait until the last change is MIN_CHANGE_INTERVAL_S old."""
        wait_s = self._changed_at + MIN_CHANGE_INTERVAL_S - time.monotonic()
        if wait_s > 0:
            time.sleep(wait_s)
        self._changed_at = time.monotonic()

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

    def _config(self) -> dict[str, object]:
        assert self.proxy is not None
        everything = [t for name in sorted(self._routes) for t in self._targets(name)]
        return caddy_config(self.proxy.admin_listen, self.http_listen, everything)

    def _push(self, deployment: str, structural: bool) -> Published:
        """Under the lock: change only this deployment's routes if the proxy has them all,
        else reload the whole configuration (once a resync has told every route)."""
        if self.proxy is None:
            return Published(False, "no proxy configured (BERTH_PROXY_ADMIN_URL is empty)")
        self._space_changes()
        try:
            routes = self._targets(deployment)
            if not structural and all(
                self.proxy.set_handlers(t.id, handlers(t.upstreams)) for t in routes
            ):
                self._unsynced.discard(deployment)
                return Published(True)
            if not self._complete:
                self._unsynced.add(deployment)
                return Published(False, "routes wait for the first full resync")
            self.proxy.load(self._config())
            self._unsynced.discard(deployment)
            return Published(True)
        except BerthError as error:
            self._unsynced.add(deployment)
            log.warning("proxy not updated", deployment=deployment, error=str(error))
            return Published(False, str(error))
