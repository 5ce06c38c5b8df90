"""`GET /api/v1/stream`: status changes, events, builds and build log lines as
server-sent events, live from LISTEN/NOTIFY, resumable with `Last-Event-ID`.

Registered by `controller.app.api`; fed by `controller.app.stream_hub`. Each message's
`event` is its kind (`spec`, `status`, `event`, `build`, `log`), its data a JSON object
with `seq` (the change's number in `berth_stream_seq`), `deployment` and `data`, and its
`id` a cursor to resume from: a client reconnecting with `Last-Event-ID` first gets every
change after it from the tables, then the live ones. Delivery is at least once around a
reconnect; clients drop a `seq` they already have. A new client starts with a `hello`
carrying the current cursor. Another replica answers the same way: the cursor is a
number in Postgres, not in a process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from sse_starlette import EventSourceResponse, ServerSentEvent

from controller.app.api import Context, Reader
from controller.app.stream_hub import CUT
from controller.model.errors import InvalidSpec

router = APIRouter(tags=["stream"])
PING_S = 15
REPLAY_PAGE = 1000


def _message(change: dict[str, Any], cursor: int) -> ServerSentEvent:
    body = {"seq": change["seq"], "deployment": change["deployment"], "data": change["data"]}
    return ServerSentEvent(
        json.dumps(body, default=str, separators=(",", ":")), event=change["kind"], id=str(cursor)
    )


@router.get("/stream", dependencies=[Reader], response_class=EventSourceResponse)
async def stream(
    ctx: Context,
    request: Request,
    deployment: str | None = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    """Live changes (optionally of one deployment) as text/event-stream."""
    if last_event_id is not None and not last_event_id.strip().isdigit():
        raise InvalidSpec(
            f"Last-Event-ID: must be a number from this stream, got {last_event_id!r}"
        )
    hub = ctx.hub
    subscriber = hub.subscribe(deployment)  # before reading the tables: nothing falls between

    async def messages() -> AsyncIterator[ServerSentEvent]:
        try:
            replayed: set[int] = set()
            if last_event_id is None:
                cursor = await run_in_threadpool(hub.safe_cursor)
                yield ServerSentEvent(json.dumps({"cursor": cursor}), event="hello", id=str(cursor))
            else:
                cursor = int(last_event_id)
                after = cursor
                while True:
                    rows = await run_in_threadpool(
                        ctx.database.stream_changes, after, [], deployment, REPLAY_PAGE
                    )
                    for row in rows:
                        replayed.add(row["seq"])
                        yield _message(row, max(cursor, min(row["seq"], hub.safe_cursor())))
                    if len(rows) < REPLAY_PAGE:
                        break
                    after = rows[-1]["seq"]
            while True:
                try:
                    change = await asyncio.wait_for(subscriber.queue.get(), timeout=1.0)
                except TimeoutError:
                    if hub.stopping.is_set() or await request.is_disconnected():
                        return
                    continue
                if change is CUT:
                    return  # fell behind: the client reconnects and resumes from the tables
                if change["seq"] in replayed:
                    continue
                cursor = max(cursor, min(change["seq"], hub.safe_cursor()))
                yield _message(change, cursor)
        finally:
            hub.unsubscribe(subscriber)

    return EventSourceResponse(messages(), ping=PING_S, headers={"Cache-Control": "no-store"})
