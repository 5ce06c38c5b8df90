"""`berth bench run api`: the HTTP API and its live stream, measured against their floors.

Called by `controller.bench.runner`. Three tables:
1. `GET /api/v1/deployments` at N deployments (p50/p99 over sequential requests, one
   keep-alive connection) against the floor: the same view read with psycopg directly.
2. SQL commit -> SSE event at the client (p50/p99; a status row changed by plain SQL)
   against the floor: a plain NOTIFY received by a plain LISTEN connection.
3. A cold converge of M deployments (against the docker-py floor, as in `cold`) without
   and with C SSE clients connected to the daemon's API: the ratio should not move.
The daemon is a real `berth run` with its API on a loopback port; the clients run in
this process on an event loop of their own.
"""

from __future__ import annotations

import asyncio
import operator
import threading
import time
from dataclasses import dataclass, field
from functools import partial

import httpx

from controller.bench import scenarios
from controller.bench.harness import BENCH_IMAGE, Environment, percentile, poll
from controller.gateways.lock_session import listen
from controller.gateways.processes import free_port


@dataclass
class ApiSizes:
    deployments: int = 1000
    requests: int = 300
    stream_trials: int = 100
    clients: int = 200
    converge: int = 100
    threads: int = 8
    pairs: int = 3

    @classmethod
    def smoke(cls) -> ApiSizes:
        return cls(
            deployments=20, requests=20, stream_trials=5, clients=5, converge=3, threads=2, pairs=1
        )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def _table(title: str, rows: list[tuple[str, float, float, str]]) -> None:
    print(f"\n== {title}")
    print(f"{'measure':<40}{'berth':>11}{'baseline':>12}{'ratio':>8}  baseline")
    for measure, berth, baseline, name in rows:
        print(f"{measure:<40}{_ms(berth)}{_ms(baseline)}{berth / baseline:>7.2f}x  {name}")


def list_latency(env: Environment, api: httpx.Client, sizes: ApiSizes) -> None:
    names = [f"api-{i:05d}" for i in range(sizes.deployments)]
    env.sql(
        "INSERT INTO deployments (name, image, replicas) SELECT unnest(%s::text[]), %s, 0",
        [names, BENCH_IMAGE],
    )
    poll(lambda: env.converged(names), timeout_s=600, interval_s=0.2)
    timings, floor = [], []
    for _ in range(sizes.requests):
        started = time.perf_counter()
        answer = api.get("/api/v1/deployments")
        timings.append(time.perf_counter() - started)
        assert answer.status_code == 200 and len(answer.json()["items"]) == len(names)
        started = time.perf_counter()
        env.sql("SELECT * FROM deployment_overview ORDER BY name")
        floor.append(time.perf_counter() - started)
    title = f"api: GET /api/v1/deployments at {len(names)} deployments, {sizes.requests} requests"
    _table(
        title,
        [
            ("p50", percentile(timings, 0.5), percentile(floor, 0.5), "the view via psycopg"),
            ("p99", percentile(timings, 0.99), percentile(floor, 0.99), "the view via psycopg"),
        ],
    )


@dataclass
class Stream:
    """One SSE reader in a thread: when each `status` message arrived, by its message."""

    port: int
    token: str
    arrived: dict[str, float] = field(default_factory=dict)
    connected: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        url = f"http://127.0.0.1:{self.port}/api/v1/stream"
        with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(5, read=60)) as answer:
            for line in answer.iter_lines():
                self.connected.set()
                if line.startswith("data:") and '"message":"bench ' in line:
                    marker = line.split('"message":"', 1)[1].split('"', 1)[0]
                    self.arrived.setdefault(marker, time.monotonic())
                    if marker == "bench stop":
                        return


def _commit_to_event(env: Environment, reader: Stream, trials: int, pause_s: float) -> list[float]:
    latencies = []
    for trial in range(trials):
        marker = f"bench {pause_s} {trial}"
        committed = time.monotonic()  # before the statement: an upper bound of the latency
        env.sql("UPDATE deployment_status SET message = %s WHERE name = 'api-00000'", [marker])
        poll(partial(operator.contains, reader.arrived, marker), timeout_s=10, interval_s=0.0005)
        latencies.append(reader.arrived[marker] - committed)
        time.sleep(pause_s)  # pacing of the commits, the variable measured
    return latencies


def stream_latency(env: Environment, port: int, token: str, sizes: ApiSizes) -> None:
    """Commits one at a time, each a change of its own (paced 100 ms apart), then commits
    back to back (each right after the previous one arrived: the hub's coalescing window)."""
    reader = Stream(port, token)
    thread = threading.Thread(target=reader.run, daemon=True)
    thread.start()
    reader.connected.wait(10)
    lone = _commit_to_event(env, reader, sizes.stream_trials, 0.1)
    burst = _commit_to_event(env, reader, sizes.stream_trials, 0.0)
    env.sql("UPDATE deployment_status SET message = 'bench stop' WHERE name = 'api-00000'")
    thread.join(10)
    floor = notify_floor(env, sizes.stream_trials)
    name = "NOTIFY -> LISTEN, psycopg"
    _table(
        f"api: SQL commit -> SSE event at the client, {sizes.stream_trials} trials each",
        [
            ("p50, commits 100 ms apart", percentile(lone, 0.5), percentile(floor, 0.5), name),
            ("p99, commits 100 ms apart", percentile(lone, 0.99), percentile(floor, 0.99), name),
            ("p50, commits back to back", percentile(burst, 0.5), percentile(floor, 0.5), name),
            ("p99, commits back to back", percentile(burst, 0.99), percentile(floor, 0.99), name),
        ],
    )


def notify_floor(env: Environment, trials: int) -> list[float]:
    """The floor: a NOTIFY by plain SQL, received by a LISTEN on another connection."""
    received: dict[int, float] = {}
    stop = threading.Event()

    def follow() -> None:
        for payload in listen(env.url, poll_s=0.2, query="listen_stream"):
            if payload is not None and payload.startswith("bench-"):
                received.setdefault(int(payload[6:]), time.monotonic())
            if stop.is_set():
                return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    time.sleep(0.5)  # LISTEN armed (the listener yields None once it is)
    latencies = []
    for trial in range(trials):
        committed = time.monotonic()
        env.sql("SELECT pg_notify('berth_stream', %s)", [f"bench-{trial}"])
        poll(partial(operator.contains, received, trial), timeout_s=10, interval_s=0.0005)
        latencies.append(received[trial] - committed)
    stop.set()
    return latencies


class Clients:
    """C SSE clients on an event loop of their own, each counting the messages it receives.
    Raw sockets, not an HTTP library: on a 2-core machine the clients share the CPU with the
    daemon they measure, so they must cost as little as possible (chunked framing is not
    decoded; `data:` lines cannot be split by it, only counted across reads)."""

    def __init__(self, port: int, token: str, count: int) -> None:
        self.port, self.token, self.count = port, token, count
        self.messages = [0] * count
        self.connected = 0
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._main(),), daemon=True
        )

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        tasks = [asyncio.create_task(self._one(index)) for index in range(self.count)]
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        request = (
            f"GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {self.token}\r\nAccept: text/event-stream\r\n\r\n"
        )
        writer.write(request.encode())
        await writer.drain()
        self.connected += 1
        tail = b""
        try:
            while chunk := await reader.read(65536):
                text = tail + chunk
                self.messages[index] += text.count(b"\ndata: ")
                tail = text[-6:]  # shorter than a match: none is counted twice
        finally:
            writer.close()

    def __enter__(self) -> Clients:
        self._thread.start()
        poll(lambda: self.connected >= self.count, timeout_s=60, interval_s=0.05)
        return self

    def __exit__(self, *_: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def converge_with_clients(env: Environment, port: int, token: str, sizes: ApiSizes) -> None:
    """Pairs of cold converges, without then with the clients connected, each against its
    own docker-py floor: the machine drifts, so only ratios measured side by side compare."""
    print(
        f"\n== api: cold converge of {sizes.converge} deployments, without and with "
        f"{sizes.clients} SSE clients connected ({sizes.pairs} interleaved pairs)"
    )
    print(f"{'':<28}{'berth':>10}{'docker-py':>11}{'ratio':>8}{'messages per client':>22}")
    ratios: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(sizes.pairs):
        for connected in (False, True):
            env.clear()
            if connected:
                with Clients(port, token, sizes.clients) as clients:
                    row = scenarios.cold(env, sizes.converge, sizes.threads, False, False)[0]
                    received = sorted(clients.messages)
                counts = f"{received[0]}-{received[-1]}"
            else:
                row = scenarios.cold(env, sizes.converge, sizes.threads, False, False)[0]
                counts = "-"
            ratio = row.berth / row.baseline if row.baseline else float("nan")
            ratios[connected].append(ratio)
            label = f"with {sizes.clients} clients" if connected else "without clients"
            print(f"{label:<28}{row.berth:>9.2f}s{row.baseline or 0:>10.2f}s{ratio:>7.2f}x"
                  f"{counts:>22}", flush=True)  # fmt: skip
    env.clear()
    print(
        f"median ratio: without {percentile(ratios[False], 0.5):.2f}x, "
        f"with {percentile(ratios[True], 0.5):.2f}x"
    )


def run(env: Environment, sizes: ApiSizes) -> None:
    port = free_port()
    env.start_daemon(BERTH_API_ADDR=f"127.0.0.1:{port}", BERTH_CONCURRENCY=str(sizes.threads))
    token = env.database.api.create_token("bench", "read")[0]
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
    ) as api:
        poll(
            lambda: api.get("/api/v1/deployments").status_code == 200, timeout_s=30, interval_s=0.1
        )
        list_latency(env, api, sizes)
    stream_latency(env, port, token, sizes)
    converge_with_clients(env, port, token, sizes)
