"""The watchers: turn Postgres notifications and Docker events into work-queue entries.

Started by the daemon, each in its own thread; they only add names to the work queue or
tell the controller loop (which decides everything else). `watch_images` follows Docker's
image events: an image appearing retries the deployments that failed for want of one.
`watch_database` LISTENs on `berth_deployments` (the payload is a deployment name);
`watch_docker` follows the Docker events stream for labelled containers. Both reconnect
with backoff when their connection drops, and call `on_reconnect` (a full resync) once
they are back, because anything may have changed while they were deaf.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import structlog

from controller.loop.engine import EngineHistory
from controller.loop.ports import ClusterEventSource, EventSource, Listen
from controller.loop.workqueue import WorkQueue
from controller.model.errors import BerthError
from controller.policy.backoff import backoff_s

log = structlog.get_logger("berth.watchers")

# Docker container events that can make what Berth observes wrong. Not `create` and
# `start`: Berth causes nearly all of them itself, an outside start only makes things more
# right, and an outside create of a labelled container is caught by the next resync (reacting
# to them doubled the passes of a cold converge). Not exec_* (one per health probe), attach,
# resize, top... The engine is asked for these only, so it never sends the others.
RELEVANT_DOCKER_ACTIONS = frozenset(
    {
        "restart",
        "die",
        "stop",
        "kill",
        "oom",
        "pause",
        "unpause",
        "destroy",
        "rename",
        "update",
        "health_status",
    }
)


# Docker emits `die`, `stop`, `kill`, `oom`, `destroy` and `health_status` before its container
# list shows the new state (the list reads a view updated a moment later; seen on 20.10):
# a pass woken by the event alone can still see the old state. These events also schedule
# a second look after this many seconds.
STATE_CHANGE_ACTIONS = frozenset({"die", "stop", "kill", "oom", "destroy", "health_status"})
RECHECK_AFTER_EVENT_S = 0.5


RECONNECT_BASE_S = 0.2
RECONNECT_MAX_S = 10.0


def _backoff(attempt: int) -> float:
    """Wait before reconnect `attempt` (1-based): 0.4 s doubling to 10 s."""
    return backoff_s(attempt + 1, RECONNECT_BASE_S, RECONNECT_MAX_S)


def follow_notifications(
    listen: Listen,
    channel_query: str,
    stopping: threading.Event,
    on_notify: Callable[[str | None], object],
    on_subscribed: Callable[[], object],
    poll_s: float = 0.5,
) -> None:
    """Follow one LISTEN (the named query `channel_query`) until `stopping`: `on_notify`
    with each payload, and with None every `poll_s` without one; `on_subscribed` after
    each (re)connect, since anything may have been missed while the session was down. A
    lost session is reconnected with the one backoff formula. The database watcher below,
    the webhook sender and the API's stream hub all follow their channel this way."""
    attempt = 0
    while not stopping.is_set():
        try:
            subscribed = False
            for payload in listen(channel_query, poll_s):
                if stopping.is_set():
                    return
                if payload is None and not subscribed:
                    subscribed, attempt = True, 0
                    log.info("listening", query=channel_query)
                    on_subscribed()
                    continue
                on_notify(payload)
        except BerthError as error:
            attempt += 1
            log.warning("listener lost", query=channel_query, error=str(error), attempt=attempt)
            stopping.wait(_backoff(attempt))


def watch_database(
    listen: Listen,
    queue: WorkQueue,
    stopping: threading.Event,
    on_subscribed: Callable[[], None],
) -> None:
    """Follow `berth_deployments` until `stopping`: each payload (a deployment name) into
    the queue; `on_subscribed` (a full resync) after each LISTEN."""

    def enqueue(payload: str | None) -> None:
        if payload is not None:
            queue.add(payload)

    follow_notifications(listen, "listen", stopping, enqueue, on_subscribed)


def watch_docker(
    docker: EventSource,
    cluster: str,
    queue: WorkQueue,
    stopping: threading.Event,
    on_subscribed: Callable[[], None],
    history: EngineHistory | None = None,
    on_engine_back: Callable[[], None] | None = None,
) -> None:
    """Follow Docker events until `stopping`; call `on_subscribed` after each (re)connect,
    or `on_engine_back` when the stream returns after the engine was lost (its stream
    ended or failed), recording both moments in `history`."""
    history = history or EngineHistory()
    lost = False
    attempt = 0
    while not stopping.is_set():
        try:
            events = docker.container_events(RELEVANT_DOCKER_ACTIONS)
            log.info("following docker events", after_loss=lost)
            if lost:
                history.back(time.time())
                (on_engine_back or on_subscribed)()
            else:
                on_subscribed()
            lost = False
            attempt = 0
            for deployment, event_cluster, action in events:
                kind = action.split(":")[0]
                if event_cluster != cluster or kind not in RELEVANT_DOCKER_ACTIONS:
                    continue
                queue.add(deployment)
                if kind in STATE_CHANGE_ACTIONS:
                    queue.add_after(deployment, RECHECK_AFTER_EVENT_S)
            if stopping.is_set():
                return
            attempt += 1  # the stream ended: the engine restarted or closed it
            log.warning("docker event stream ended", attempt=attempt)
        except BerthError as error:
            if stopping.is_set():
                return
            attempt += 1
            log.warning("docker event stream lost", error=str(error), attempt=attempt)
        if not lost:
            history.lost(time.time())
            lost = True
        stopping.wait(_backoff(attempt))


def watch_images(
    docker: EventSource, stopping: threading.Event, on_image: Callable[[str], None]
) -> None:
    """Follow Docker's image events until `stopping`; call `on_image(name)` for each image
    that appeared (a deployment failed for want of it may now succeed)."""
    follow_stream(docker.image_events, stopping, on_image, "image")


def watch_cluster(
    docker: ClusterEventSource, stopping: threading.Event, controller: Resyncs
) -> None:
    """Follow a swarm's node and service events until `stopping`: each (a node going down,
    drained or back; a service removed by someone else) asks for a full resync, which finds
    the replicas they moved (a node's tasks have no events of their own)."""

    def changed(what: str) -> None:
        log.info("cluster changed", what=what)
        controller.request_resync()

    follow_stream(docker.cluster_events, stopping, changed, "cluster")


class Resyncs(Protocol):
    def request_resync(self) -> None: ...


def follow_stream(
    open_stream: Callable[[], Iterator[str]],
    stopping: threading.Event,
    on_item: Callable[[str], None],
    what: str,
) -> None:
    """Follow one event stream until `stopping`, reopening it with backoff when it ends."""
    attempt = 0
    while not stopping.is_set():
        try:
            for item in open_stream():
                attempt = 0
                on_item(item)
            if stopping.is_set():
                return
            attempt += 1
        except BerthError as error:
            if stopping.is_set():
                return
            attempt += 1
            log.warning("docker event stream lost", stream=what, error=str(error), attempt=attempt)
        stopping.wait(_backoff(attempt))
