"""`GET /api/v1/stream`: status changes, events, builds and build log lines as
server-sent events, live from LISTEN/NOTIFY, resumable with `Last-Event-ID`.

Registered by `controller.app.api`; fed by `controller.app.stream_hub`. Each message's
`event` is its kind (`spec`, `status`, `event`, `build`, `log`), its data a JSON object
with `seq` (the change's number in `berth_stream_seq`), `deployment` and `data`, and its
`id` a cursor to resume from: a client reconnecting with `Last-Event-ID` first gets every
change after it from the tables, then the live ones. Delivery is at least once around a
reconnect; clients drop a `seq` they already have. A new client starts with a `hello`
carrying the current cursor. Another replica answers the same way: the cursor is a
number in Postgres, not in a process. Frames waiting in a client's inbox go out in one
write: a client that is behind catches up in few, larger writes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from controller.app.api_deps import Context, DeploymentFilter, LastEventId, Reader, answers
from controller.app.stream_hub import encode

router = APIRouter(tags=["stream"])
REPLAY_PAGE = 1000
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


@router.get(
    "/stream", dependencies=[Reader], response_class=StreamingResponse, responses=answers(403)
)
async def stream(
    ctx: Context,
    deployment: DeploymentFilter = None,
    last_event_id: LastEventId = "",
) -> StreamingResponse:
    """Live changes (optionally of one deployment) as text/event-stream."""
    hub = ctx.hub
    subscriber = hub.subscribe(deployment)  # before reading the tables: nothing falls between

    async def messages() -> AsyncIterator[bytes]:
        try:
            replayed: set[int] = set()
            if not last_event_id:
                cursor = await run_in_threadpool(hub.safe_cursor)
                hello = json.dumps({"cursor": cursor})
                yield f"id: {cursor}\nevent: hello\ndata: {hello}\n\n".encode()
            else:
                cursor = after = int(last_event_id)
                while True:
                    rows = await run_in_threadpool(
                        ctx.database.api.stream_changes, after, [], deployment, REPLAY_PAGE
                    )
                    safe = hub.safe_cursor()
                    replayed.update(row["seq"] for row in rows)
                    frames = [encode(row, max(cursor, min(row["seq"], safe))) for row in rows]
                    if frames:
                        yield b"".join(frame for _, _, frame in frames)
                    if len(rows) < REPLAY_PAGE:
                        break
                    after = rows[-1]["seq"]
            while True:
                # No timeout here: the hub pings idle clients and ends every response when it
                # stops; a client that goes away cancels this (Starlette listens for it).
                batch = await subscriber.queue.get()
                while not subscriber.queue.empty():
                    batch = batch + subscriber.queue.get_nowait()
                subscriber.taken(batch)
                if subscriber.cut:
                    return  # fell behind, or the server stops: the client resumes elsewhere
                chunk = b"".join(frame for seq, _, frame in batch if seq not in replayed)
                if chunk:
                    yield chunk
        finally:
            hub.unsubscribe(subscriber)

    return StreamingResponse(messages(), media_type="text/event-stream", headers=HEADERS)
