"""The HTTP API's application: one FastAPI app, its auth, its errors, its dashboard.

Built by `controller.app.api_server` (which serves it with uvicorn in every `berth run`
replica) and by tests and benchmarks in process. Routes live in `api_deployments`,
`api_builds` and `api_stream`; every read comes from Postgres and every write is a row
change through the same SQL an operator would run, so the database's validation is the
API's. Errors are JSON `{"error": ..., "field": ...}`: invalid spec 422 naming the field
as the database named it, unknown name 404, conflicting change 409, Postgres down 503
with `Retry-After`; never a stack trace.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from importlib import resources
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.app.operations import ReplicaOutput
from controller.app.stream_hub import StreamHub
from controller.gateways.postgres import Database
from controller.model.errors import (
    BerthError,
    Conflict,
    DatabaseRejected,
    DatabaseUnavailable,
    DockerUnavailable,
    Forbidden,
    InvalidSpec,
    NotFound,
    PermissionDenied,
    SourceInvalid,
    Unauthorized,
)
from controller.model.settings import Settings
from controller.observability.metrics import API_DURATION, API_REQUESTS

log = structlog.get_logger("berth.api")
PREFIX = "/api/v1"
RETRY_AFTER_S = 2
_FIELD = re.compile(r"^([a-z_]+(?:\.[^\s:]+)?): ")


@dataclass
class ApiContext:
    """What the routes need; the daemon (or a test) builds it."""

    settings: Settings
    database: Database
    hub: StreamHub
    runtime: ReplicaOutput | None = None


def context(request: Request) -> ApiContext:
    found: ApiContext = request.app.state.context
    return found


Context = Annotated[ApiContext, Depends(context)]
_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Caller:
    token: str  # the token's name, never its value
    scope: str


def caller(
    ctx: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("an API token is needed: Authorization: Bearer <token>")
    found = ctx.database.token_scope(credentials.credentials)
    if found is None:
        raise Unauthorized("unknown or revoked API token")
    return Caller(*found)


def can_read(who: Annotated[Caller, Depends(caller)]) -> Caller:
    return who


def can_write(who: Annotated[Caller, Depends(caller)]) -> Caller:
    if who.scope != "write":
        raise Forbidden("this token may only read: create one with --scope write")
    return who


Reader = Depends(can_read)
Writer = Depends(can_write)


def error_body(error: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) for one of Berth's errors."""
    message = str(error)
    headers: dict[str, str] = {}
    if isinstance(error, Unauthorized):
        return 401, {"error": message}, {"WWW-Authenticate": "Bearer"}
    if isinstance(error, Forbidden | PermissionDenied):
        return 403, {"error": message}, headers
    if isinstance(error, NotFound):
        return 404, {"error": message}, headers
    if isinstance(error, Conflict):
        return 409, {"error": message}, headers
    if isinstance(error, InvalidSpec | SourceInvalid | DatabaseRejected):
        match = _FIELD.match(message)
        return 422, {"error": message, "field": match.group(1) if match else None}, headers
    if isinstance(error, DatabaseUnavailable | DockerUnavailable):
        retry = {"Retry-After": str(RETRY_AFTER_S)}
        return 503, {"error": message, "retry_after_s": RETRY_AFTER_S}, retry
    return 500, {"error": "internal error: see the daemon's log"}, headers


class RequestMetrics:
    """Counts and times /api requests by route template (a bounded label). Plain ASGI:
    Starlette's `BaseHTTPMiddleware` would relay every chunk of a stream through a task of
    its own, which 200 stream clients paid for in CPU."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "other")
            API_DURATION.labels(route=template).observe(time.perf_counter() - started)
            method = scope["method"]
            API_REQUESTS.labels(route=template, method=method, status=f"{status // 100}xx").inc()


def create_app(ctx: ApiContext) -> FastAPI:
    from controller.app import api_builds, api_deployments, api_stream

    app = FastAPI(
        title="Berth",
        version="1",
        summary="Deployments on plain Docker hosts; Postgres rows are the truth.",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
    )
    app.state.context = ctx
    for module in (api_deployments, api_builds, api_stream):
        app.include_router(module.router, prefix=PREFIX)
    for route in app.routes:
        path = getattr(route, "path", "")
        if path.startswith(PREFIX):
            API_DURATION.labels(route=path)  # every route's series exists from the start

    @app.exception_handler(BerthError)
    async def berth_error(_request: Request, error: BerthError) -> JSONResponse:
        status, body, headers = error_body(error)
        if status == 500:
            log.error("api error", error=str(error), kind=type(error).__name__)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(part) for part in first.get("loc", ()))
        return JSONResponse({"error": f"{field}: {first['msg']}", "field": field}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": error.detail}, error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, error: Exception) -> JSONResponse:
        log.exception("api bug", error=str(error))
        return JSONResponse({"error": "internal error: see the daemon's log"}, 500)

    app.add_middleware(RequestMetrics)
    dashboard = resources.files("controller").joinpath("app/dashboard")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        # Only this origin's own script and styles: a value shown on the page can never run.
        headers = {
            "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }
        return FileResponse(str(dashboard.joinpath("index.html")), headers=headers)

    app.mount("/static", StaticFiles(directory=str(dashboard)), name="static")
    return app
