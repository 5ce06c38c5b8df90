"""The HTTP API's application: one FastAPI app built from its route modules.

Built by `controller.app.api_server` (which serves it with uvicorn in every `berth run`
replica) and by tests and benchmarks in process. Routes live in `api_deployments`,
`api_builds` and `api_stream`, independent of each other, over what they share in
`api_deps` (the context, token checks, the one error shape and the statuses each route
declares). Every read comes from Postgres and every write is a row change through the same
SQL an operator would run, so the database's validation is the API's. Errors are JSON
`{"error": ..., "field": ...}`: invalid input 422 naming the field, unknown name 404,
conflicting change 409, Postgres down 503 with `Retry-After`, a method a path does not
take 405 with every method it does take in `Allow`; never a stack trace.
"""

from __future__ import annotations

import re
import time
from importlib import resources

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.app import api_builds, api_deployments, api_stream
from controller.app.api_deps import PREFIX, ApiContext, error_body
from controller.model.errors import BerthError
from controller.observability.metrics import API_DURATION, API_REQUESTS

log = structlog.get_logger("berth.api")


def allowed_methods(app: FastAPI, path: str) -> str:
    """Every method the API document declares for this path (Starlette's 405 names only
    the first route's, though one path has several routes: GET, PUT, PATCH, DELETE)."""
    methods: set[str] = set()
    for template, operations in app.openapi()["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            methods |= {method.upper() for method in operations}
    return ", ".join(sorted(methods))


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
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        headers = dict(error.headers or {})
        if error.status_code == 405:
            headers["Allow"] = allowed_methods(app, request.url.path)
        return JSONResponse({"error": error.detail}, error.status_code, headers=headers)

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
