"""The daemon (`berth run`): wires the gateways, the work queue, workers, watchers and resync.

Called by the CLI. `start()` returns once everything runs (integration tests use it in
process); `run_until_signalled()` adds SIGTERM/SIGINT handling for the real daemon.
The loop itself is `controller.loop.controller.Controller`; this module only builds and
wires it. Threads: N workers (BERTH_CONCURRENCY) running the controller's passes,
one NOTIFY listener, the Docker container-events and image-events followers, the
apscheduler thread (the full resync, never overlapping itself; janitor; certificates), the leader
election, the node reporter (which also refreshes the `/status` snapshot) and the HTTP
endpoint, whose probes run in `controller.app.probes`. Every replica runs all of them;
only the leader's passes, resyncs and build dispatcher act (the others end at their first
`leadership.fence()`). The build dispatcher runs builds in threads of its own
(`controller.loop.builder`), never in the workers; the webhook sender
(`controller.loop.webhooks`) POSTs the outbox from its own small pool. The HTTP API and
dashboard (`controller.app.api_server`) run on every replica, with their own pool.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
import uuid
from datetime import datetime
from types import FrameType
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler

from controller.app.api_server import ApiServer
from controller.app.http_server import HttpEndpoint
from controller.app.probes import Probes
from controller.gateways.acme_issuer import AcmeIssuer
from controller.gateways.docker_builds import DockerBuilder
from controller.gateways.docker_engine import DockerGateway
from controller.gateways.docker_runtime import DockerRuntime
from controller.gateways.docker_storage import DockerStorage
from controller.gateways.git_source import GitGateway
from controller.gateways.haproxy import HaproxyGateway
from controller.gateways.internal_ca import Signer
from controller.gateways.lock_session import LockSession, listener
from controller.gateways.postgres import Database
from controller.gateways.registry import registry_for
from controller.gateways.swarm_runtime import SwarmRuntime
from controller.gateways.swarm_storage import SwarmStorage
from controller.gateways.webhook_client import WebhookClient
from controller.gateways.workspace import Workspaces
from controller.loop import faults
from controller.loop.builder import BuildDispatcher
from controller.loop.certificates import CertificateKeeper
from controller.loop.controller import Controller
from controller.loop.dataplane import DataPlaneGuard
from controller.loop.engine import EngineHistory, warn_of_engine_faults
from controller.loop.janitor import Janitor
from controller.loop.leadership import Leadership
from controller.loop.nodes import NodeKeeper
from controller.loop.ports import Stores
from controller.loop.reconciler import Reconciler
from controller.loop.resync import FullResync
from controller.loop.routes import RouteKeeper
from controller.loop.stops import BackgroundStops
from controller.loop.watchers import watch_cluster, watch_database, watch_docker, watch_images
from controller.loop.webhooks import WebhookSender
from controller.loop.workqueue import WorkQueue
from controller.model.errors import BerthError, DataPlaneRefused
from controller.model.settings import Settings
from controller.observability.logs import set_node
from controller.observability.metrics import IS_LEADER, LEADER_CHANGES, LEADER_TERM

log = structlog.get_logger("berth.daemon")
RESYNC_JOB = "full-resync"
JANITOR_JOB = "clean-up"
NODE_REPORT_INTERVAL_S = 2.0


class Daemon:
    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        self.database_url = database_url
        self.stopping = threading.Event()
        node_id = str(uuid.uuid4())
        self.database = Database(
            database_url,
            pool_size=settings.concurrency + 3 + 2 * settings.build_concurrency,
            idle_in_transaction_s=settings.leader_trust_window_s,
            # A new leader checks whether this process still has sessions (leadership).
            application_name=f"berth {node_id}",
        )
        self.docker = DockerGateway(pool_size=settings.concurrency + 4 + settings.stop_concurrency)
        self.swarm = settings.runtime == "swarm"
        self.runtime = SwarmRuntime(self.docker) if self.swarm else DockerRuntime(self.docker)
        swarm = self.runtime if isinstance(self.runtime, SwarmRuntime) else None
        self.nodes = NodeKeeper(self.runtime, self.database.nodes, swarm)
        self.queue = WorkQueue()
        self.listen = listener(database_url)
        self.data_plane = DataPlaneGuard(
            settings.cluster, socket.gethostname(), self.database.claims, self.runtime
        )
        self.leadership = Leadership(
            database_url,
            settings.cluster,
            heartbeat_interval_s=settings.leader_heartbeat_interval_s,
            trust_window_s=settings.leader_trust_window_s,
            silence_timeout_s=settings.leader_silence_timeout_s,
            on_elected=self._on_elected,
            on_deposed=self._on_deposed,
            node_id=node_id,
            connect=LockSession,
            eligible=self._refused,
        )
        self.engine = EngineHistory()
        self.proxy = HaproxyGateway(settings.proxy_admin_url) if settings.proxy_admin_url else None
        self.routes = RouteKeeper(self.proxy)
        self.image_builder = DockerBuilder(self.docker, settings.build_timeout_s)
        self.builds = BuildDispatcher(
            settings,
            self.database.builds,
            GitGateway(settings.source_timeout_s),
            self.image_builder,
            Workspaces(settings.workspace_dir, settings.cluster),
            self.leadership,
            self.stopping,
        )
        self.webhook_client = WebhookClient(settings.webhook_timeout_s)
        self.webhooks = WebhookSender(settings, self.database.api, self.webhook_client,
            self.leadership, self.stopping, self.listen)  # fmt: skip
        self.storage = (SwarmStorage if self.swarm else DockerStorage)(self.docker)
        self.registry = registry_for(settings.registry, settings.registry_config)
        retention = self.database.retention
        self.janitor = Janitor(
            settings, retention, self.storage, self.leadership, self.image_builder, self.registry
        )
        acme = AcmeIssuer(settings.acme_directory_url, settings.acme_ca_bundle, settings.acme_email)
        self.certificates = CertificateKeeper(self.database.certificates, self.proxy, acme,
            Signer(), self.routes, self.leadership, settings.proxy_https_addr)  # fmt: skip
        self.api = ApiServer(settings, database_url, self.runtime) if settings.api_addr else None
        db = self.database
        self.stores = Stores(db.deployments, db.status, db.mutations, db.revisions, db.builds)
        self.stops = BackgroundStops(self.queue.add, settings.stop_concurrency)
        self.reconciler = Reconciler(
            settings,
            self.stores,
            self.runtime,
            self.leadership,
            self.stopping,
            engine=self.engine,
            wake_builds=self.builds.wake,
            routes=self.routes,
            storage=self.storage,
            stops=self.stops,
        )
        resync = FullResync(
            settings,
            self.stores,
            self.runtime,
            self.leadership,
            self.routes,
            nodes=self.nodes,
            stops=self.stops,
        )
        self.controller = Controller(
            self.reconciler,
            resync,
            self.queue,
            self.stopping,
            elected=lambda: self.leadership.term is not None,
        )
        faults.arm(settings.crash_at)
        set_node(self.leadership.node_id)
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.probes = Probes(
            {
                "postgres": self.database.schema.ping,
                "docker": self.docker.ping_once,
                "data plane": self._may_lead,
            },
            lambda: {**db.views.cluster_snapshot(settings.cluster), "database": db.schema.ping(2)},
            self._local_status,
        )
        self.http = HttpEndpoint(
            settings.http_host,
            settings.http_port,
            self._alive,
            self.probes.ready,
            self.probes.status,
        )
        self._threads: list[threading.Thread] = []
        self._report_now = threading.Event()
        self._started_at = time.monotonic()
        self._started_wall = datetime.now().astimezone()

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        if self.settings.migrate_on_start:
            applied = self.database.schema.migrate(self.settings.database_roles)
            if applied:
                log.info("migrations applied", versions=applied)
        else:
            self.database.schema.check_schema()
        self.docker.ping()
        warn_of_engine_faults(self.docker.engine_version(), self.settings.stop_concurrency)
        self.http.start()
        if self.api is not None:
            self.api.start()
        self._spawn("leadership", self.leadership.run, self.stopping)
        self._spawn("node-report", self._report_node_loop)
        for index in range(self.settings.concurrency):
            self._spawn(f"worker-{index}", self.controller.work)
        self._spawn("builds", self.builds.run)
        self._spawn("webhooks", self.webhooks.run)
        self._spawn(
            "listen",
            watch_database,
            self.listen,
            self.queue,
            self.stopping,
            self.controller.request_resync,
        )
        self._spawn(
            "docker-events",
            watch_docker,
            self.docker,
            self.settings.cluster,
            self.queue,
            self.stopping,
            self.controller.request_resync,
            self.engine,
            self.controller.engine_returned,
        )
        self._spawn(
            "image-events", watch_images, self.docker, self.stopping, self.controller.image_appeared
        )
        if self.settings.runtime == "swarm":
            self._spawn(
                "cluster-events", watch_cluster, self.docker, self.stopping, self.controller
            )
        self.scheduler.add_job(
            self.controller.resync,
            "interval",
            seconds=self.settings.resync_interval_s,
            id=RESYNC_JOB,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now().astimezone(),
        )
        for job, work, every_s in (
            (JANITOR_JOB, self.janitor.sweep, self.settings.retention_interval_s),
            ("certificates", self.certificates.sweep, self.settings.certificate_interval_s),
        ):
            self.scheduler.add_job(
                work, "interval", seconds=every_s, id=job, max_instances=1, coalesce=True
            )
        self.scheduler.start()
        log.info(
            "berth started",
            cluster=self.settings.cluster,
            http=f"{self.settings.http_host}:{self.http.port}",
            api=None if self.api is None else f"port {self.api.port}",
            concurrency=self.settings.concurrency,
        )

    def _spawn(self, name: str, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop taking work, let in-flight passes end (they stop between actions), close."""
        if self.stopping.is_set():
            return
        log.info("berth stopping")
        self.stopping.set()
        self.leadership.stop()
        self.scheduler.shutdown(wait=False)
        self.queue.shut_down()
        self.docker.close_event_streams()
        deadline = time.monotonic() + self.settings.shutdown_grace_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.stops.close(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            log.warning("abandoning threads still busy at shutdown", threads=stuck)
        self.http.stop()
        if self.api is not None:
            self.api.stop()
        self.webhook_client.close()
        if self.registry is not None:
            self.registry.close()
        self.probes.close()
        self._report_node("stopped")
        self.database.close()
        self.docker.close()
        log.info("berth stopped")

    def run_until_signalled(self) -> None:
        signalled = threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("signal received", signal=signal.Signals(signum).name)
            signalled.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        try:
            while not signalled.wait(1.0):
                pass
        finally:
            self.stop()

    # --- leadership ------------------------------------------------------------------------
    def _on_elected(self, term: int) -> None:
        IS_LEADER.set(1)
        LEADER_TERM.set(term)
        LEADER_CHANGES.labels(change="elected").inc()
        self._report_now.set()  # by the reporter thread: never block the election on the pool
        self.controller.start_leading(lambda: self.leadership.term == term)

    def _on_deposed(self, term: int) -> None:
        IS_LEADER.set(0)
        LEADER_CHANGES.labels(change="deposed").inc()
        self._report_now.set()  # step-down never waits on the pool (Postgres may be down)

    def _refused(self) -> str | None:
        """Why this replica may not lead (one data plane per cluster), or None."""
        found = self.data_plane.refusal()
        return None if found is None else found.message

    def _may_lead(self) -> None:
        """A readiness check: a replica that refuses to lead is not ready, and says why."""
        found = self.data_plane.last()
        if found is not None:
            raise DataPlaneRefused(found.message)

    def _role(self) -> str:
        if self.leadership.term is not None:
            return "leader"
        return "refused" if self.data_plane.last() is not None else "standby"

    def _report_node(self, role: str | None = None) -> None:
        term = self.leadership.term
        refused = self.data_plane.last()
        try:
            self.database.views.report_node(
                {
                    "node_id": self.leadership.node_id,
                    "cluster": self.settings.cluster,
                    "host": self.leadership.host,
                    "pid": self.leadership.pid,
                    "http_addr": f"{self.settings.http_host}:{self.http.port}",
                    "role": role or self._role(),
                    "term": term,
                    "started_at": self._started_wall,
                    "note": None if refused is None else refused.message,
                }
            )
        except BerthError as error:
            log.debug("could not report node", error=str(error))

    def _report_node_loop(self) -> None:
        while not self.stopping.is_set():
            self._report_now.wait(NODE_REPORT_INTERVAL_S)
            self._report_now.clear()
            if self.stopping.is_set():
                return
            self.data_plane.refusal()  # kept fresh here: a standby that wins the lock waits not
            self._report_node()
            self.probes.refresh()

    # --- health -----------------------------------------------------------------------------
    def _alive(self) -> tuple[bool, str]:
        dead = [t.name for t in self._threads if not t.is_alive()]
        if dead and not self.stopping.is_set():
            return False, f"threads died: {', '.join(dead)}"
        limit = 3 * self.settings.resync_interval_s + 30
        last = self.controller.last_resync_ok or self._started_at
        if self.leadership.is_leader and time.monotonic() - last > limit:
            return False, f"no successful full resync for over {limit:g}s"
        return True, "ok"

    def _local_status(self) -> dict[str, Any]:
        return {
            "cluster": self.settings.cluster,
            "node": {
                "id": self.leadership.node_id,
                "host": self.leadership.host,
                "pid": self.leadership.pid,
                "role": self._role(),
                "term": self.leadership.term,
            },
            "data_plane": (
                "verified" if (found := self.data_plane.last()) is None else found.message
            ),
            "queue_pending": self.queue.pending(),
            "in_flight": self.queue.in_flight(),
        }
