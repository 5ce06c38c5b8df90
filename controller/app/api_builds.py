"""`/api/v1/builds`, `/api/v1/archives` and `/api/v1/cluster`.

Registered by `controller.app.api`. The build queue with positions and the history come
from the `builds` table and `build_queue` view; cancel sets `cancel_requested_at` (a queued
build is cancelled by the database at once, a running one by its job within 2 s). An
upload is streamed to a temporary file as it arrives (refused past
BERTH_ARCHIVE_MAX_BYTES with 413), then into a Postgres large object, and answers its
sha256 for `source: {"archive": {"sha256": ...}}`.
"""

from __future__ import annotations

import tarfile
import tempfile
from typing import Annotated, Any, BinaryIO, cast

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from controller.app.api_deps import (
    BIGINT_MAX,
    READS,
    BuildId,
    Caller,
    Context,
    FileName,
    Reader,
    Writer,
    answers,
    can_read,
    public,
)
from controller.model.errors import NotFound, SourceInvalid

router = APIRouter()
SPOOL_IN_MEMORY = 1 << 20  # larger uploads spill to disk as they arrive


@router.get("/builds", tags=["builds"], dependencies=[Reader], responses=READS)
def builds(
    ctx: Context,
    deployment: str | None = None,
    dead: Annotated[bool, Query(description="dead-lettered builds only")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """The queue first (with `position` of `queue_length`), then the newest builds."""
    rows = ctx.database.builds.builds(deployment, dead, limit)
    return {"items": [public(row) for row in rows]}


@router.get(
    "/builds/{build_id}", tags=["builds"], dependencies=[Reader], responses=answers(403, 404)
)
def build(ctx: Context, build_id: BuildId) -> dict[str, Any]:
    row = ctx.database.api.build(build_id)
    if row is None:
        raise NotFound(f"build {build_id} not found")
    return public(row)


@router.get(
    "/builds/{build_id}/logs",
    tags=["builds"],
    dependencies=[Reader],
    responses=answers(403, 404),
)
def build_logs(
    ctx: Context,
    build_id: BuildId,
    after: Annotated[int, Query(ge=0, le=BIGINT_MAX, description="lines after this seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> dict[str, Any]:
    """The build's output lines (git, docker build, Berth's notes) after `after`."""
    status = ctx.database.builds.build_status(build_id)
    if status is None:
        raise NotFound(f"build {build_id} not found")
    lines = ctx.database.builds.build_logs(build_id, after, limit)
    return {"status": status, "items": lines}


@router.post(
    "/builds/{build_id}/cancel",
    status_code=202,
    tags=["builds"],
    dependencies=[Writer],
    responses=answers(403, 404, 409),
)
def cancel(ctx: Context, build_id: BuildId) -> dict[str, Any]:
    """Cancel a waiting (at once) or running (within 2 s) build; 409 if it already ended."""
    row = ctx.database.api.cancel_build(build_id)
    return {"build": row["id"], "status": row["status"]}


@router.post(
    "/archives",
    status_code=201,
    tags=["builds"],
    dependencies=[Writer],
    responses=answers(403, 413),
)
async def upload(
    ctx: Context,
    request: Request,
    x_filename: FileName = "upload.tar",
) -> JSONResponse:
    """Upload a tar or tar.gz (the request body); answers its sha256."""
    limit = ctx.settings.archive_max_bytes
    with tempfile.SpooledTemporaryFile(SPOOL_IN_MEMORY) as spool:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return JSONResponse(
                    {"error": f"archive: larger than {limit} bytes (BERTH_ARCHIVE_MAX_BYTES)"},
                    status_code=413,
                )
            spool.write(chunk)
        spool.seek(0)
        if not _is_tar(spool):
            raise SourceInvalid("archive: the body is not a tar or tar.gz file")
        sha256, stored, new = await run_in_threadpool(
            ctx.database.builds.store_archive, cast(BinaryIO, spool), x_filename[:200], limit
        )
    body = {
        "sha256": sha256,
        "size_bytes": stored,
        "new": new,
        "source": {"archive": {"sha256": sha256}},
    }
    return JSONResponse(body, status_code=201 if new else 200)


def _is_tar(stream: Any) -> bool:
    try:
        with tarfile.open(fileobj=stream, mode="r:*"):
            return True
    except (tarfile.TarError, EOFError, OSError):
        return False
    finally:
        stream.seek(0)


@router.get("/token", tags=["cluster"], responses=answers())
def token(who: Annotated[Caller, Depends(can_read)]) -> dict[str, str]:
    """The calling token's name and scope (the dashboard shows write actions to `write`)."""
    return {"name": who.token, "scope": who.scope}


@router.get("/cluster", tags=["cluster"], dependencies=[Reader], responses=READS)
def cluster(ctx: Context) -> dict[str, Any]:
    """The leader, its term, and the replicas heard from in the last 30 s."""
    leader = ctx.database.views.leader(ctx.settings.cluster)
    return {
        "cluster": ctx.settings.cluster,
        "leader": leader,
        "term": None if leader is None else leader.get("term"),
        "replicas": ctx.database.views.nodes(ctx.settings.cluster),
    }


@router.get("/nodes", tags=["cluster"], dependencies=[Reader], responses=READS)
def nodes(ctx: Context) -> list[dict[str, Any]]:
    """The runtime's nodes (Swarm's; one engine is the node `local`): state, availability,
    how many of Berth's replicas each runs, and why a drain waits."""
    return ctx.database.nodes.nodes(ctx.settings.cluster)
