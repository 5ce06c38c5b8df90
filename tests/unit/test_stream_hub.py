"""The stream hub on a fake database: changes encoded once, filtered per client, and a
client that falls behind cut off instead of waited for."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from controller.app.stream_hub import BUFFER, StreamHub, Subscriber, encode


class FakeStreamDatabase:
    def __init__(self, rows: list[dict[str, Any]], head: int = 0) -> None:
        self.rows = rows
        self.head = head
        self.reads: list[tuple[int, list[int]]] = []

    def stream_head(self) -> int:
        return self.head

    def stream_changes(
        self, after: int, holes: list[int], deployment: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        self.reads.append((after, holes))
        found = [r for r in self.rows if r["seq"] > after or r["seq"] in holes]
        return sorted(found, key=lambda r: r["seq"])[:limit]


def change(seq: int, deployment: str = "web", kind: str = "status") -> dict[str, Any]:
    return {"seq": seq, "kind": kind, "deployment": deployment, "data": {"phase": "active"}}


def test_a_frame_is_one_sse_message_with_its_cursor() -> None:
    seq, deployment, frame = encode(change(7), cursor=5)
    text = frame.decode()
    assert (seq, deployment) == (7, "web")
    assert text.startswith("id: 5\nevent: status\ndata: ") and text.endswith("\n\n")
    assert json.loads(text.split("data: ", 1)[1])["seq"] == 7


def test_changes_reach_every_client_once_and_filters_apply() -> None:
    async def scenario() -> None:
        database = FakeStreamDatabase([])
        hub = StreamHub(database, "unused", threading.Event())
        hub._read()  # the first read takes the head as its cursor
        everything, only_db = hub.subscribe(None), hub.subscribe("db")
        database.rows = [change(1), change(2, "db"), change(4)]  # 3: a hole (not committed)
        hub._read()
        await asyncio.sleep(0)  # the hub hands frames to the event loop
        assert [seq for seq, _, _ in everything.queue.get_nowait()] == [1, 2, 4]
        assert [seq for seq, _, _ in only_db.queue.get_nowait()] == [2]
        assert hub.safe_cursor() == 2  # resuming from 2 would still get 3 when it commits
        database.rows.append(change(3))
        hub._read()
        await asyncio.sleep(0)
        assert [seq for seq, _, _ in everything.queue.get_nowait()] == [3]
        assert database.reads[-1] == (4, [3]), "the hole is asked for again"
        assert hub.safe_cursor() == 4
        assert everything.queue.empty() and only_db.queue.empty()

    asyncio.run(scenario())


def test_a_client_that_falls_behind_is_cut_off_not_waited_for() -> None:
    async def scenario() -> None:
        slow = Subscriber(asyncio.get_running_loop(), None)
        frames = [encode(change(seq), seq) for seq in range(1, BUFFER + 2)]
        slow.offer(frames[:BUFFER])
        assert not slow.cut
        slow.offer(frames[BUFFER:])  # one more than it may have waiting
        assert slow.cut
        slow.offer(frames[:1])  # ignored from now on
        batches = [slow.queue.get_nowait() for _ in range(slow.queue.qsize())]
        assert batches[-1] == [], "its reader is told to end the response"

    asyncio.run(scenario())
