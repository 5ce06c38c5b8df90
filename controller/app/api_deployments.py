"""`/api/v1/deployments`: list, read, create, replace, patch, delete; events, revisions,
rollback, retry and container logs.

Registered by `controller.app.api`. Writes send the spec to the database as JSON
(`Database.create_deployment`/`replace_deployment`), so a refusal is the database's own
message naming the field. Replace, patch and delete honour `If-Match: <generation>`: a row
that moved on since the caller read it answers 409 instead of losing someone's change.
PATCH is a JSON merge patch of the top-level fields (null removes one).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from fastapi.concurrency import iterate_in_threadpool
from fastapi.responses import StreamingResponse

from controller.app.api_deps import (
    BIGINT_MAX,
    READS,
    Context,
    DeploymentName,
    IfMatch,
    NewSpecBody,
    Reader,
    SpecBody,
    Writer,
    answers,
    public,
    storable,
)
from controller.app.operations import build_again, replica_output, roll_back, spec_document
from controller.model.errors import DockerUnavailable, InvalidSpec, NotFound
from controller.model.spec import MAX_REPLICAS

router = APIRouter(tags=["deployments"])


def _generation(if_match: str) -> int | None:
    if not if_match:
        return None
    value = if_match.strip().strip('"').removeprefix("W/").strip('"')
    if not value.isdigit():
        raise InvalidSpec(f"If-Match: must be a generation number, got {if_match!r}")
    return int(value)


def _named(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    storable(spec)
    if "name" in spec and spec["name"] != name:
        raise InvalidSpec(f"deployments.name: {spec['name']!r} differs from the URL's {name!r}")
    return {key: value for key, value in spec.items() if key != "name"}


def _one(ctx: Context, name: DeploymentName) -> dict[str, Any]:
    spec = ctx.database.views.spec_row(name)
    rows = ctx.database.views.overview(name)
    if spec is None or not rows:
        raise NotFound(f"deployment {name!r} not found")
    latest = ctx.database.builds.latest_build(name)
    return {
        "name": name,
        "spec": public(spec_document(spec)),
        "generation": spec["generation"],
        "status": public(rows[0]),
        "latest_build": None if latest is None else latest.id,
        # where each replica runs (the `replicas` view): node, state, address, the runtime's note
        "replicas": [public(row) for row in ctx.database.nodes.replicas(name)],
    }


@router.get("/deployments", dependencies=[Reader], responses=READS)
def list_deployments(ctx: Context) -> Response:
    """Every deployment with its status (the `deployment_overview` view, which redacts git
    credentials), serialised by Postgres: at 1,000 deployments that halves the answer time."""
    body = '{"items":' + ctx.database.views.overview_json() + "}"
    return Response(body, media_type="application/json")


@router.post(
    "/deployments", status_code=201, dependencies=[Writer], responses=answers(400, 403, 409)
)
def create_deployment(ctx: Context, spec: NewSpecBody, response: Response) -> dict[str, Any]:
    """Create a deployment (409 if the name exists)."""
    name = spec.get("name")
    if not isinstance(name, str):
        raise InvalidSpec("deployments.name: required, a string")
    generation = ctx.database.api.create_deployment(name, _named(name, spec))
    response.headers["Location"] = f"/api/v1/deployments/{name}"
    response.headers["ETag"] = f'"{generation}"'
    return _one(ctx, name)


@router.get("/deployments/{name}", dependencies=[Reader], responses=answers(403, 404))
def get_deployment(ctx: Context, name: DeploymentName, response: Response) -> dict[str, Any]:
    found = _one(ctx, name)
    response.headers["ETag"] = f'"{found["generation"]}"'
    return found


@router.put("/deployments/{name}", dependencies=[Writer], responses=answers(400, 403, 404, 409))
def replace_deployment(
    ctx: Context, name: DeploymentName, spec: SpecBody, if_match: IfMatch = ""
) -> dict[str, Any]:
    """Replace the whole spec (absent fields take their defaults)."""
    ctx.database.api.replace_deployment(name, _named(name, spec), _generation(if_match))
    return _one(ctx, name)


@router.patch("/deployments/{name}", dependencies=[Writer], responses=answers(400, 403, 404, 409))
def patch_deployment(
    ctx: Context, name: DeploymentName, patch: SpecBody, if_match: IfMatch = ""
) -> dict[str, Any]:
    """Change some top-level fields (JSON merge patch: null removes a field)."""
    current = ctx.database.views.spec_row(name)
    if current is None:
        raise NotFound(f"deployment {name!r} not found")
    merged = {**spec_document(current), **_named(name, patch)}
    spec = {key: value for key, value in merged.items() if value is not None and key != "name"}
    expected = _generation(if_match)
    ctx.database.api.replace_deployment(
        name, spec, int(current["generation"]) if expected is None else expected
    )
    return _one(ctx, name)


@router.delete(
    "/deployments/{name}",
    status_code=202,
    dependencies=[Writer],
    responses=answers(403, 404, 409),
)
def delete_deployment(ctx: Context, name: DeploymentName, if_match: IfMatch = "") -> dict[str, str]:
    """Delete the row; Berth then removes its containers (watch the stream)."""
    ctx.database.api.delete_deployment_at(name, _generation(if_match))
    return {"deleted": name}


@router.get("/deployments/{name}/events", dependencies=[Reader], responses=answers(403, 404))
def events(
    ctx: Context,
    name: DeploymentName,
    before: Annotated[
        int | None, Query(ge=1, le=BIGINT_MAX, description="events older than this id")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """The deployment's events, newest first; `next` pages to older ones."""
    rows = ctx.database.api.events_page(name, before, limit)
    if not rows and before is None and ctx.database.views.spec_row(name) is None:
        raise NotFound(f"deployment {name!r} has no events")
    older = rows[-1]["id"] if len(rows) == limit else None
    return {"items": rows, "next": None if older is None else f"?before={older}&limit={limit}"}


@router.get("/deployments/{name}/revisions", dependencies=[Reader], responses=answers(403, 404))
def revisions(ctx: Context, name: DeploymentName) -> dict[str, Any]:
    rows = ctx.database.revisions.revisions(name)
    if not rows and ctx.database.views.spec_row(name) is None:
        raise NotFound(f"deployment {name!r} not found")
    return {"items": [public({**row, "spec": public(row["spec"])}) for row in rows]}


@router.post(
    "/deployments/{name}/rollback",
    dependencies=[Writer],
    responses=answers(400, 403, 404, 409),
)
def rollback(
    ctx: Context,
    name: DeploymentName,
    to_revision: Annotated[int | None, Body(embed=True)] = None,
) -> dict[str, Any]:
    """Write an earlier revision's spec back (default: the one before the serving one)."""
    done = roll_back(ctx.database, name, to_revision)
    return {"revision": done.revision, "image": done.image, "generation": done.generation}


@router.post(
    "/deployments/{name}/retry",
    status_code=202,
    dependencies=[Writer],
    responses=answers(403, 404, 409),
)
def retry(ctx: Context, name: DeploymentName) -> dict[str, Any]:
    """Build the source again (a moved branch is re-resolved)."""
    build = build_again(ctx.database, name, "api")
    return {"build": build.id, "generation": build.generation, "status": build.status.value}


@router.get("/deployments/{name}/logs", dependencies=[Reader], responses=answers(403, 404))
def logs(
    ctx: Context,
    name: DeploymentName,
    replica: Annotated[int, Query(ge=0, le=MAX_REPLICAS)] = 0,
    tail: Annotated[int, Query(ge=0, le=10000)] = 200,
    follow: bool = False,
) -> StreamingResponse:
    """A replica's container output, as text (`follow` keeps streaming new lines)."""
    if ctx.runtime is None:
        raise DockerUnavailable("this replica has no Docker engine to read logs from")
    lines = replica_output(ctx.runtime, ctx.settings.cluster, name, replica, tail, follow)
    return StreamingResponse(iterate_in_threadpool(lines), media_type="text/plain")
