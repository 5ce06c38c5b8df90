"""What every API route module shares: the context, the token checks, the one error shape,
what each status means, and the parameter types Postgres can store.

Imported by the route modules (`api_deployments`, `api_builds`, `api_stream`), which are
independent of each other, and by `controller.app.api`, which builds the app from them
(`lint-imports` keeps that order). Errors are JSON `{"error": ..., "field": ...}` (one
schema, `ErrorBody`), and every route declares each status it can answer (`answers`), so
the OpenAPI document tells the truth: a property-based fuzzer finds no status it does not
declare (README, "The HTTP API").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Body, Depends, Header, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from controller.app.operations import ReplicaOutput
from controller.app.stream_hub import StreamHub
from controller.gateways.postgres import Database
from controller.model.errors import (
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
from controller.model.names import NAME_REGEX
from controller.model.settings import Settings
from controller.model.source import redact_url

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
    found = ctx.database.api.token_scope(credentials.credentials)
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


# --- parameters: only what Postgres can store, declared as such ---------------------------
DeploymentName = Annotated[
    str, Path(pattern=NAME_REGEX, max_length=63, description="a deployment's name")
]
DeploymentFilter = Annotated[
    str | None,
    Query(pattern=NAME_REGEX, max_length=63, description="only this deployment's changes"),
]
# Headers are text, never JSON null: absent is the empty default.
IfMatch = Annotated[
    str,
    Header(
        pattern=r'^((W/)?"?[0-9]{1,18}"?)?$',
        description="the generation you read: 409 if the row moved on",
    ),
]
LastEventId = Annotated[
    str,
    Header(pattern=r"^([0-9]{1,18})?$", description="resume after this stream position"),
]
# A row's id (bigint) or a count: within what Postgres stores.
BIGINT_MAX = 2**63 - 1
BuildId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="a build's id")]
SpecBody = Annotated[
    dict[str, Any],
    Body(
        description="the deployment, as in `berth apply` (the database checks every field "
        "and names the one it refuses)",
        json_schema_extra={"properties": {"name": {"type": "string", "pattern": NAME_REGEX}}},
    ),
]
NewSpecBody = Annotated[
    dict[str, Any],
    Body(
        description="the deployment, as in `berth apply`, with its `name`",
        json_schema_extra={
            "required": ["name"],
            "properties": {"name": {"type": "string", "pattern": NAME_REGEX}},
        },
    ),
]
# A header's text: printable, no NUL (Postgres cannot store one in text).
FileName = Annotated[
    str,
    Header(pattern=r"^[^\x00-\x1f\x7f]{1,200}$", description="kept with the archive"),
]


def storable(value: Any, path: str = "") -> None:
    """Refuse, naming the field, a JSON value Postgres cannot store: a NUL character or a
    lone surrogate (not UTF-8) anywhere in a key or a string."""
    if isinstance(value, str):
        problem = _unstorable(value)
        if problem:
            raise InvalidSpec(f"{path or 'body'}: {problem}, which PostgreSQL cannot store")
    elif isinstance(value, dict):
        for key, item in value.items():
            problem = _unstorable(str(key))
            if problem:
                raise InvalidSpec(
                    f"{path or 'body'}: a key {problem}, which PostgreSQL cannot store"
                )
            storable(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            storable(item, f"{path}[{index}]")


def _unstorable(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode()
    except UnicodeEncodeError:
        return "is not valid UTF-8 (a lone surrogate)"
    return None


# --- answers: one error shape, every status declared -------------------------------------
class ErrorBody(BaseModel):
    """Every error the API answers: what went wrong, and the field it names, if any."""

    error: str
    field: str | None = None
    retry_after_s: int | None = None


MEANING = {
    400: "the body could not be read (not UTF-8)",
    401: "no API token, or an unknown or revoked one",
    403: "the token may only read, or the database refused the role",
    404: "no such deployment or build",
    409: "the row moved on (If-Match), exists already, or the build has ended",
    413: "larger than BERTH_ARCHIVE_MAX_BYTES",
    422: "invalid input; `field` names it as the database or the schema named it",
    503: "Postgres or Docker unreachable: try again after `Retry-After`",
}


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error statuses a route declares, each with the one error schema. Every route
    answers 401 and 503 (tokens live in Postgres) and 422 (its parameters)."""
    every = sorted({401, 422, 503, *statuses})
    return {status: {"model": ErrorBody, "description": MEANING[status]} for status in every}


READS = answers(403)  # 403: the database may refuse the role the API runs as
WRITES = answers(400, 403)


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


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the API shows it: a git URL's credentials redacted."""
    source = row.get("source")
    if isinstance(source, dict) and isinstance(source.get("git"), dict):
        git = source["git"]
        row = {**row, "source": {**source, "git": {**git, "url": redact_url(str(git["url"]))}}}
    return row
