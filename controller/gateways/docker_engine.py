"""The Docker gateway: the only module that imports docker-py.

Called by the executor (create, start, remove, images), the reconciler and the resync (one
list call per pass), the restart gate (inspect, logs) and the watchers (the events
stream). It hands out typed values (`ObservedContainer`, `ContainerState`) and takes a
`ContainerRequest`, building Docker's own arguments here and nowhere else. Uses the low-
level `APIClient`: its list call returns labels, state and health for every container in
one request, where the high-level client would inspect each one. Driver errors become
Berth's typed errors, chained with `raise ... from`; idempotent calls are retried with
tenacity on transient errors only. Every call treats "already done" as success: a create
whose name exists with the same labels returns that container, a start of a running
container and a remove of a missing one succeed.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import docker
import docker.errors
import docker.types
import docker.utils
import requests

from controller.gateways.retry import retry_transient
from controller.model.containers import ContainerRequest, ContainerState, ObservedContainer
from controller.model.errors import (
    DockerConflict,
    DockerRejected,
    DockerServerError,
    DockerUnavailable,
    ImageUnavailable,
    NameTaken,
    TransientError,
)
from controller.model.names import (
    DEFAULT_CLUSTER,
    LABEL_CLUSTER,
    LABEL_DEPLOYMENT,
    LABEL_REPLICA,
    LABEL_SPEC_HASH,
)
from controller.observability.metrics import DOCKER_DURATION, DOCKER_ERRORS

_NANOSECONDS = 1_000_000_000
_IMAGE_APPEARED = frozenset({"pull", "tag", "load", "import"})
_DOCKER_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")
_HEALTH_IN_STATUS = re.compile(r"\((healthy|unhealthy|health: starting)\)")
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
        if status == 409:
            return DockerConflict(f"{what}: {explanation}")
        if status >= 500 and not spec_caused(explanation):
            return DockerServerError(f"{what}: {explanation}")
        return DockerRejected(f"{what}: {explanation}")
    if isinstance(error, docker.errors.DockerException):
        return DockerUnavailable(f"{what}: {error}")
    return error


@contextmanager
def _translated(call: str, detail: str = "", timed: bool = True) -> Iterator[None]:
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


def _health(status_text: str) -> str:
    match = _HEALTH_IN_STATUS.search(status_text or "")
    if not match:
        return "none"
    return "starting" if match.group(1) == "health: starting" else match.group(1)


def observed_from_summary(summary: dict[str, Any]) -> ObservedContainer:
    """Parse one entry of Docker's container list into what the planner sees."""
    labels = summary.get("Labels") or {}
    replica_text = labels.get(LABEL_REPLICA, "")
    names = summary.get("Names") or [""]
    return ObservedContainer(
        id=summary["Id"],
        name=names[0].lstrip("/"),
        deployment=labels.get(LABEL_DEPLOYMENT),
        replica=int(replica_text) if replica_text.isdigit() else None,
        spec_hash=labels.get(LABEL_SPEC_HASH),
        cluster=labels.get(LABEL_CLUSTER, DEFAULT_CLUSTER),
        state=summary.get("State", "unknown"),
        health=_health(summary.get("Status", "")),
        created=int(summary.get("Created", 0)),
        ports=tuple(
            (int(port["PrivatePort"]), str(port.get("IP") or ""), int(port["PublicPort"]))
            for port in summary.get("Ports") or ()
            if port.get("PublicPort") and port.get("Type", "tcp") == "tcp"
        ),
    )


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


def state_from_inspect(state: dict[str, Any]) -> ContainerState:
    """Parse the `State` block of an inspect into what failure messages need."""
    health_log = (state.get("Health") or {}).get("Log") or []
    exit_code = state.get("ExitCode")
    return ContainerState(
        status=str(state.get("Status", "unknown")),
        exit_code=int(exit_code) if exit_code is not None else None,
        oom_killed=bool(state.get("OOMKilled")),
        health_output=str(health_log[-1].get("Output", "")).strip() if health_log else "",
        finished_at=docker_time(state.get("FinishedAt")),
        started_at=docker_time(state.get("StartedAt")),
    )


def docker_arguments(request: ContainerRequest) -> dict[str, Any]:
    """`create_container` keyword arguments for `request` (plus `port_bindings`)."""
    probe = request.healthcheck
    arguments: dict[str, Any] = {
        "image": request.image,
        "command": list(request.command) if request.command is not None else None,
        "environment": dict(request.environment),
        "labels": dict(request.labels),
        "ports": [(port.container, port.protocol) for port in request.ports] or None,
        "port_bindings": {
            f"{p.container}/{p.protocol}": p.host if p.host_ip is None else (p.host_ip, p.host)
            for p in request.ports
        }
        or None,
        "healthcheck": None
        if probe is None
        else {
            "test": list(probe.test),
            "interval": int(probe.interval_s * _NANOSECONDS),
            "timeout": int(probe.timeout_s * _NANOSECONDS),
            "retries": probe.retries,
            "start_period": int(probe.start_period_s * _NANOSECONDS),
        },
    }
    optional = {
        "user": request.user,
        "stop_signal": request.stop_signal,
        "stop_timeout": request.stop_timeout_s,
    }
    arguments.update({key: value for key, value in optional.items() if value is not None})
    return arguments


def host_config_arguments(request: ContainerRequest) -> dict[str, Any]:
    """`create_host_config` keyword arguments for `request`: only what it asks for, so a
    container of an older spec is created exactly as before."""
    limits = request.limits
    network_mode = request.network_mode or (request.networks[0] if request.networks else None)
    wanted: dict[str, Any] = {
        "mounts": [
            docker.types.Mount(
                m.target,
                m.source,
                type="volume" if m.kind == "volume" else "bind",
                read_only=m.read_only,
            )
            for m in request.mounts
        ],
        "mem_limit": limits.memory_bytes,
        "nano_cpus": limits.nano_cpus,
        "pids_limit": limits.pids,
        "read_only": request.read_only,
        "cap_add": list(request.cap_add),
        "cap_drop": list(request.cap_drop),
        "init": request.init,
        "privileged": request.privileged,
        "network_mode": network_mode,
        "pid_mode": request.pid_mode,
        "ipc_mode": request.ipc_mode,
        "devices": [f"{device}:{device}:rwm" for device in request.devices],
    }
    return {key: value for key, value in wanted.items() if value not in (None, False, [])}


class DockerGateway:
    """Thread-safe wrapper of one `APIClient` (its connection pool serves every worker)."""

    def __init__(self, pool_size: int = 10, timeout_s: int = 60) -> None:
        with _translated("connect"):
            self.api = docker.APIClient(
                version="auto",
                timeout=timeout_s,
                max_pool_size=pool_size,
                **docker.utils.kwargs_from_env(),
            )
        self._event_streams: set[Any] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        self.close_event_streams()
        self.api.close()

    @retry_transient
    def ping(self) -> None:
        with _translated("ping"):
            self.api.ping()

    def ping_once(self) -> None:
        """One ping, not retried: for probes."""
        with _translated("ping"):
            self.api.ping()

    @retry_transient
    def list_managed(self, deployment: str | None = None) -> list[ObservedContainer]:
        """Every container carrying a deployment label (of one deployment if named): one call."""
        label = LABEL_DEPLOYMENT if deployment is None else f"{LABEL_DEPLOYMENT}={deployment}"
        with _translated("list"):
            summaries = self.api.containers(all=True, filters={"label": [label]})
        return [observed_from_summary(summary) for summary in summaries]

    @retry_transient
    def image_present(self, image: str) -> bool:
        try:
            with _translated("inspect_image", image):
                self.api.inspect_image(image)
            return True
        except DockerRejected:  # 404: not here
            return False

    def ensure_image(self, image: str) -> str:
        """Make sure `image` is present: 'present' if it was, 'pulled' if pulled, else raise."""
        if self.image_present(image):
            return "present"
        repository, tag = docker.utils.parse_repository_tag(image)
        try:
            with _translated("pull", image):
                self.api.pull(repository, tag=tag or "latest")
        except (DockerRejected, DockerServerError, DockerConflict) as error:
            raise ImageUnavailable(
                f"image {image!r} is not present locally and could not be pulled: {error}"
            ) from error
        if not self.image_present(image):
            raise ImageUnavailable(f"image {image!r} is still missing after a pull")
        return "pulled"

    @retry_transient
    def create(self, request: ContainerRequest) -> str:
        """Create a container (not started); return its id. A repeat finds the first one."""
        arguments = docker_arguments(request)
        with _translated("create", request.name):
            host_config = self.api.create_host_config(
                port_bindings=arguments.pop("port_bindings"), **host_config_arguments(request)
            )
            if request.networks:  # the first network at create, under the aliases
                arguments["networking_config"] = {
                    "EndpointsConfig": {request.networks[0]: {"Aliases": list(request.aliases)}}
                }
        try:
            with _translated("create", request.name):
                created = self.api.create_container(
                    **arguments, host_config=host_config, name=request.name, detach=True
                )
            container_id = str(created["Id"])
        except DockerConflict:
            container_id = self._existing_with_same_identity(request.name, request.labels)
        self._join_networks(container_id, request)
        return container_id

    def _join_networks(self, container_id: str, request: ContainerRequest) -> None:
        """The networks after the first (joined at create); already joined counts as done."""
        for network in request.networks[1:]:
            try:
                with _translated("connect", network):
                    self.api.connect_container_to_network(
                        container_id, network, aliases=list(request.aliases)
                    )
            except (DockerRejected, DockerConflict, DockerServerError) as error:
                if "already exists" not in str(error):
                    raise

    def _existing_with_same_identity(self, name: str, labels: dict[str, str]) -> str:
        with _translated("inspect", name):
            existing = self.api.inspect_container(name)
        found = existing["Config"].get("Labels") or {}
        if LABEL_DEPLOYMENT not in found:
            raise NameTaken(
                f"container name {name!r} is held by a container without Berth's labels "
                f"({existing['Id'][:12]}); Berth never touches it: rename or remove it"
            )
        identity = (LABEL_DEPLOYMENT, LABEL_REPLICA, LABEL_SPEC_HASH)
        if all(found.get(key) == labels.get(key) for key in identity) and (
            found.get(LABEL_CLUSTER, DEFAULT_CLUSTER) == labels.get(LABEL_CLUSTER)
        ):
            return str(existing["Id"])
        raise DockerConflict(f"container name {name!r} is still held by an older container")

    @retry_transient
    def start(self, container_id: str, from_state: str = "created") -> None:
        with _translated("start", container_id[:12]):
            if from_state == "paused":
                self.api.unpause(container_id)
            else:
                self.api.start(container_id)

    @retry_transient
    def restart(self, container_id: str, stop_timeout_s: int) -> None:
        with _translated("restart", container_id[:12]):
            self.api.restart(container_id, timeout=stop_timeout_s)

    @retry_transient
    def remove(self, container_id: str, stop_timeout_s: int) -> None:
        """Stop gracefully, then remove with its anonymous volumes. Missing = done."""
        try:
            with _translated("remove", container_id[:12]):
                try:
                    self.api.stop(container_id, timeout=stop_timeout_s)
                except docker.errors.APIError as error:
                    if error.status_code not in (304, 409):  # already stopped / paused
                        raise
                self.api.remove_container(container_id, v=True, force=True)
        except DockerRejected as error:
            if "No such container" in str(error) or "is already in progress" in str(error):
                return
            raise
        except DockerConflict as error:
            if "already in progress" in str(error):
                return
            raise

    def inspect_state(self, container_id: str) -> ContainerState:
        """Why one container stopped or is unhealthy (exit code, OOM, last health output)."""
        with _translated("inspect", container_id[:12]):
            state = dict(self.api.inspect_container(container_id).get("State") or {})
        return state_from_inspect(state)

    def logs_tail(self, container_id: str, lines: int = 20) -> str:
        with _translated("logs", container_id[:12]):
            output = self.api.logs(container_id, tail=lines, stdout=True, stderr=True)
        return output.decode(errors="replace") if isinstance(output, bytes) else str(output)

    def follow_logs(self, container_id: str, lines: int, follow: bool) -> Iterator[str]:
        """A container's output (`berth logs`): the last `lines`, then new ones if `follow`."""
        with _translated("logs", container_id[:12], timed=False):
            stream = self.api.logs(
                container_id, stream=True, follow=follow, tail=lines, stdout=True, stderr=True
            )
            for chunk in stream:
                yield chunk.decode(errors="replace") if isinstance(chunk, bytes) else str(chunk)

    def container_events(self) -> Iterator[tuple[str, str, str]]:
        """Open the events stream now; yield (deployment, cluster, action) until closed or lost."""
        with _translated("events"):
            stream = self.api.events(
                decode=True, filters={"type": "container", "label": [LABEL_DEPLOYMENT]}
            )
        with self._lock:
            self._event_streams.add(stream)
        return self._iterate_events(stream)

    def image_events(self) -> Iterator[str]:
        """Open the image events stream; yield the name of each image that appeared (pulled,
        tagged, loaded, imported) until closed or lost."""
        with _translated("events"):
            stream = self.api.events(decode=True, filters={"type": "image"})
        with self._lock:
            self._event_streams.add(stream)
        return self._iterate_images(stream)

    def _iterate_images(self, stream: Any) -> Iterator[str]:
        try:
            with _translated("events", timed=False):
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
            with _translated("events", timed=False):  # a stream lasting hours is no latency
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
