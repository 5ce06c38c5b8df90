"""Serves the HTTP API and dashboard with uvicorn, in a thread of the `berth run` process.

Started by the daemon (`controller.app.daemon`) on every replica when BERTH_API_ADDR is
set (followers too: reads come from Postgres, writes are row changes), and by the API
benchmark. It has its own small connection pool, which waits at most
`API_ACQUIRE_TIMEOUT_S` for a connection, so API traffic never takes a connection the loop
needs, and a Postgres outage answers 503 quickly instead of hanging requests.
"""

from __future__ import annotations

import asyncio
import threading
import time

import structlog
import uvicorn
import uvloop

from controller.app.api import create_app
from controller.app.api_deps import ApiContext
from controller.app.operations import ReplicaOutput
from controller.app.stream_hub import StreamHub
from controller.gateways.postgres import Database
from controller.model.errors import BerthError
from controller.model.settings import Settings

log = structlog.get_logger("berth.api")
API_POOL_SIZE = 8
API_ACQUIRE_TIMEOUT_S = 1.0  # x 4 attempts: a 503 within about 5 s while Postgres is down
START_TIMEOUT_S = 15.0


class ApiServer:
    def __init__(
        self, settings: Settings, database_url: str, runtime: ReplicaOutput | None
    ) -> None:
        self.settings = settings
        self.stopping = threading.Event()
        self.database = Database(
            database_url,
            pool_size=API_POOL_SIZE,
            application_name="berth api",
            acquire_timeout_s=API_ACQUIRE_TIMEOUT_S,
        )
        self.hub = StreamHub(self.database.api, database_url, self.stopping)
        self.app = create_app(ApiContext(settings, self.database, self.hub, runtime))
        host, _, port = settings.api_addr.rpartition(":")
        config = uvicorn.Config(
            self.app,
            host=host.strip("[]"),
            port=int(port),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            http="httptools",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="api", daemon=True)

    def _serve(self) -> None:
        # uvloop and httptools (uvicorn's own fast paths): every stream client costs a write
        # per batch of changes, and the API shares the process (and its cores) with the loop.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(self._server.serve())

    @property
    def port(self) -> int:
        servers = getattr(self._server, "servers", [])
        for server in servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return 0

    def start(self) -> None:
        """Start the stream hub and the server; return once the port is bound."""
        self.hub.start()
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise BerthError(f"the API could not listen on {self.settings.api_addr}")
            time.sleep(0.02)
        self.hub.ready.wait(START_TIMEOUT_S)
        log.info("api listening", addr=f"{self._server.config.host}:{self.port}")

    def stop(self) -> None:
        self.stopping.set()
        self._server.should_exit = True
        self._thread.join(5)
        self.database.close()
