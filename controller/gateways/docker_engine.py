"""The Docker gateway: the one client of a Docker engine, and its error translation.

One low-level `APIClient` (its connection pool serves every worker), pinged by the probes;
images (present, pulled), a container's output followed (`berth logs`) and the events
streams the watchers follow. The docker runtime (`controller.gateways.docker_runtime`),
the storage and build gateways make their calls through it and its `translated`: the
only place where driver errors become Berth's typed errors (`raise ... from`), each call
timed with a bounded label. Idempotent calls are retried with tenacity on transient
errors only.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import docker
import docker.errors
import docker.transport
import docker.utils
import requests

from controller.gateways.docker_transport import short_path
from controller.gateways.retry import retry_transient
from controller.model.errors import (
    DockerConflict,
    DockerRejected,
    DockerServerError,
    DockerUnavailable,
    ImageUnavailable,
    ReplicaVanished,
    TransientError,
)
from controller.model.names import (
    DEFAULT_CLUSTER,
    LABEL_CLUSTER,
    LABEL_DEPLOYMENT,
)
from controller.model.replicas import HealthProbe
from controller.observability.metrics import DOCKER_DURATION, DOCKER_ERRORS

_IMAGE_APPEARED = frozenset({"pull", "tag", "load", "import"})
_DOCKER_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")
# A 5xx is the engine's own failure (restarting, its store, the network, load) and passes:
# transient. Only a container process that the runtime could not start because of what the
# spec asked for (a command that is not in the image, not executable) is the spec's fault.
_RUNTIME_START = ("OCI runtime", "starting container process")
_SPEC_CAUSED_START_FAILURES = (
    "executable file not found",
    "no such file or directory",
    "permission denied",
    "operation not permitted",  # the runtime may not grant what the spec asks (privileged)
)


def spec_caused(explanation: str) -> bool:
    """Whether a 5xx from the engine names a failure that the spec caused."""
    return any(marker in explanation for marker in _RUNTIME_START) and any(
        failure in explanation for failure in _SPEC_CAUSED_START_FAILURES
    )


def _translate(error: Exception, what: str) -> Exception:
    if isinstance(error, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
        return DockerUnavailable(f"{what}: Docker engine unreachable: {error}")
    if isinstance(error, docker.errors.APIError):
        explanation = str(error.explanation or error)
        status = error.status_code or 500
        if status == 404 and (
            "No such container" in explanation
            or ("service" in explanation and "not found" in explanation)
        ):
            return ReplicaVanished(f"{what}: {explanation}")
        if "update out of sequence" in explanation:
            # Swarm: another writer moved the object's version; read it again and retry
            return DockerServerError(f"{what}: {explanation}")
        if status == 409:
            return DockerConflict(f"{what}: {explanation}")
        if status >= 500 and not spec_caused(explanation):
            return DockerServerError(f"{what}: {explanation}")
        return DockerRejected(f"{what}: {explanation}")
    if isinstance(error, docker.errors.DockerException):
        return DockerUnavailable(f"{what}: {error}")
    return error


@contextmanager
def translated(call: str, detail: str = "", timed: bool = True) -> Iterator[None]:
    """Time one Docker call (bounded label `call`) and turn driver errors into Berth's."""
    started = time.perf_counter()
    try:
        yield
    except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
        translated = _translate(error, f"{call} {detail}".strip())
        kind = "transient" if isinstance(translated, TransientError) else "permanent"
        DOCKER_ERRORS.labels(call=call, kind=kind).inc()
        raise translated from error
    finally:
        if timed:
            DOCKER_DURATION.labels(call=call).observe(time.perf_counter() - started)


NANOSECONDS = 1_000_000_000


def healthcheck_arguments(probe: HealthProbe) -> dict[str, Any]:
    """A healthcheck in Docker's units (nanoseconds), keyed as docker-py takes it; Swarm's
    API takes the same keys capitalised (`swarm_runtime`)."""
    return {
        "test": list(probe.test),
        "interval": int(probe.interval_s * NANOSECONDS),
        "timeout": int(probe.timeout_s * NANOSECONDS),
        "retries": probe.retries,
        "start_period": int(probe.start_period_s * NANOSECONDS),
    }


def docker_time(text: str | None) -> float | None:
    """Docker's RFC 3339 time with nanoseconds as unix seconds; None for its zero time."""
    if not text or text.startswith("0001-"):
        return None
    match = _DOCKER_TIME.match(text)
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + (zone if zone != "Z" else "+00:00"))
    return moment.timestamp() + float("0." + (fraction or "0"))


def _one_connection_pool(api: docker.APIClient) -> None:
    """docker-py's unix-socket adapter keeps a connection pool per URL (a container's id, a
    list's filters are in the URL), at most 25, so nearly every call of a busy loop made a
    new socket and closed an old one. Every URL of a unix socket goes to the same socket:
    one pool (of `max_pool_size` kept connections) serves them all, as docker-py's TCP
    adapter already does (it keys its pools by host).

    Nor does a unix socket go through an HTTP proxy or use ~/.netrc, which requests looks up
    in the environment and on disk before every call (`trust_env`): about a quarter of each
    call's client CPU, 0.5 ms of 2.2 for a list (measured, 400 calls). A TCP engine keeps
    them: its proxy settings still apply."""
    adapter = api.get_adapter(api.base_url)
    if not isinstance(adapter, docker.transport.UnixHTTPAdapter):
        return
    api.trust_env = False
    by_url = adapter.get_connection

    def one_pool(url: str, proxies: Any = None) -> Any:
        return by_url(api.base_url, proxies)

    adapter.get_connection = one_pool  # type: ignore[method-assign,assignment]


# How long an image seen present is taken as present without asking the engine again.
IMAGE_SEEN_S = 2.0


class DockerGateway:
    """Thread-safe wrapper of one `APIClient` (its connection pool serves every worker)."""

    def __init__(
        self, pool_size: int = 10, timeout_s: int = 60, image_seen_s: float = IMAGE_SEEN_S
    ) -> None:
        self._engine = docker.utils.kwargs_from_env()  # where the engine is, as the env says
        self._image_seen_s = image_seen_s
        self._seen_present: dict[str, float] = {}  # image -> when it was last seen present
        with translated("connect"):
            self.api = docker.APIClient(
                version="auto", timeout=timeout_s, max_pool_size=pool_size, **self._engine
            )
        _one_connection_pool(self.api)
        short_path(self.api)
        self._event_streams: set[Any] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        self.close_event_streams()
        self.api.close()

    @retry_transient
    def ping(self) -> None:
        with translated("ping"):
            self.api.ping()

    @retry_transient
    def engine_version(self) -> str:
        """The engine's version as it reports it ("20.10.24+dfsg1")."""
        with translated("version"):
            return str(self.api.version(api_version=False).get("Version") or "")

    def ping_once(self) -> None:
        """One ping, not retried: for probes."""
        with translated("ping"):
            self.api.ping()

    def accepting(self) -> bool:
        """Whether the engine takes a new connection. A stopping dockerd closes its listener
        first and then stops every container while it still answers on the connections it
        has: a kept-alive connection sees the shutdown's exits as plain exits, a new one is
        refused from the shutdown's first moment."""
        try:
            with translated("ping"):
                fresh = docker.APIClient(version=self.api.api_version, timeout=2, **self._engine)
                try:
                    fresh.ping()
                finally:
                    fresh.close()
        except DockerUnavailable:
            return False
        return True

    @retry_transient
    def image_present(self, image: str) -> bool:
        try:
            with translated("inspect_image", image):
                self.api.inspect_image(image)
            return True
        except DockerRejected:  # 404: not here
            return False

    def ensure_image(self, image: str, before_pull: Callable[[], None] | None = None) -> str:
        """Make sure `image` is present: 'present' if it was, 'pulled' if pulled (after
        calling `before_pull`), else raise. An image seen present within `image_seen_s` is
        not asked for again (a cold start of many deployments of one image asked once per
        deployment); a create that finds it gone after all calls `forget_image`."""
        seen = self._seen_present.get(image)
        if seen is not None and time.monotonic() - seen < self._image_seen_s:
            return "present"
        if self.image_present(image):
            self._seen_present[image] = time.monotonic()
            return "present"
        if before_pull is not None:
            before_pull()
        repository, tag = docker.utils.parse_repository_tag(image)
        try:
            with translated("pull", image):
                self.api.pull(repository, tag=tag or "latest")
        except (DockerRejected, DockerServerError, DockerConflict) as error:
            raise ImageUnavailable(
                f"image {image!r} is not present locally and could not be pulled: {error}"
            ) from error
        if not self.image_present(image):
            raise ImageUnavailable(f"image {image!r} is still missing after a pull")
        self._seen_present[image] = time.monotonic()
        return "pulled"

    def forget_image(self, image: str) -> None:
        """`image` was not there after all: the next `ensure_image` asks the engine."""
        self._seen_present.pop(image, None)

    def follow_logs(self, container_id: str, lines: int, follow: bool) -> Iterator[str]:
        """A container's output (`berth logs`): the last `lines`, then new ones if `follow`."""
        with translated("logs", container_id[:12], timed=False):
            stream = self.api.logs(
                container_id, stream=True, follow=follow, tail=lines, stdout=True, stderr=True
            )
            for chunk in stream:
                yield chunk.decode(errors="replace") if isinstance(chunk, bytes) else str(chunk)

    def container_events(
        self, actions: Collection[str] | None = None
    ) -> Iterator[tuple[str, str, str]]:
        """Open the events stream now; yield (deployment, cluster, action) until closed or lost.
        With `actions`, the engine sends only those (a `health_status` matches each of its
        `health_status: ...`): the exec events of every health probe, a few hundred a second
        with many containers probing, are never sent, let alone decoded."""
        filters: dict[str, Any] = {"type": "container", "label": [LABEL_DEPLOYMENT]}
        if actions is not None:
            filters["event"] = sorted(actions)
        with translated("events"):
            stream = self.api.events(decode=True, filters=filters)
        with self._lock:
            self._event_streams.add(stream)
        return self._iterate_events(stream)

    def image_events(self) -> Iterator[str]:
        """Open the image events stream; yield the name of each image that appeared (pulled,
        tagged, loaded, imported) until closed or lost."""
        with translated("events"):
            stream = self.api.events(decode=True, filters={"type": "image"})
        with self._lock:
            self._event_streams.add(stream)
        return self._iterate_images(stream)

    def cluster_events(self) -> Iterator[str]:
        """Open a swarm manager's node and service events; yield "node <name> <change>" for a
        node's state or availability changing, "service <name> removed" for a Berth
        service removed, until closed or lost."""
        with translated("events"):
            stream = self.api.events(decode=True, filters={"type": ["node", "service"]})
        with self._lock:
            self._event_streams.add(stream)
        return self._iterate_cluster(stream)

    def _iterate_cluster(self, stream: Any) -> Iterator[str]:
        try:
            with translated("events", timed=False):
                for event in stream:
                    attributes = (event.get("Actor") or {}).get("Attributes") or {}
                    name = str(attributes.get("name", ""))
                    if event.get("Type") == "node":
                        changed = [
                            f"{key.split('.')[0]} {attributes[key]}"
                            for key in ("state.new", "availability.new")
                            if key in attributes
                        ]
                        if changed or event.get("Action") in ("create", "remove"):
                            yield f"node {name} {', '.join(changed) or event.get('Action')}"
                    elif event.get("Action") == "remove" and name.startswith("berth-"):
                        yield f"service {name} removed"
        finally:
            with self._lock:
                self._event_streams.discard(stream)
            stream.close()

    def _iterate_images(self, stream: Any) -> Iterator[str]:
        try:
            with translated("events", timed=False):
                for event in stream:
                    if str(event.get("Action", "")) in _IMAGE_APPEARED:
                        actor = event.get("Actor") or {}
                        name = (actor.get("Attributes") or {}).get("name") or actor.get("ID")
                        yield str(name or "")
        finally:
            with self._lock:
                self._event_streams.discard(stream)
            stream.close()

    def _iterate_events(self, stream: Any) -> Iterator[tuple[str, str, str]]:
        try:
            with translated("events", timed=False):  # a stream lasting hours is no latency
                for event in stream:
                    attributes = (event.get("Actor") or {}).get("Attributes") or {}
                    deployment = attributes.get(LABEL_DEPLOYMENT)
                    cluster = attributes.get(LABEL_CLUSTER, DEFAULT_CLUSTER)
                    if deployment:
                        yield deployment, cluster, str(event.get("Action", ""))
        finally:
            with self._lock:
                self._event_streams.discard(stream)
            stream.close()

    def close_event_streams(self) -> None:
        with self._lock:
            streams = list(self._event_streams)
        for stream in streams:
            with contextlib.suppress(Exception):  # closing a dead socket may fail; nothing to do
                stream.close()
