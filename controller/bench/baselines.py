"""Benchmark baselines: what Berth is compared with, driven through raw docker-py.

Called by `controller.bench.scenarios`. This module imports docker-py directly, outside the
gateway, on purpose: the floor *is* "a script calling the Docker API with docker-py", so it
must not carry Berth's gateway (retries, error translation, metrics). Its containers carry
`berth-bench.baseline=<run>` and never `io.berth.deployment`, so no Berth touches them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
import docker.types
import docker.utils

BASELINE_LABEL = "berth-bench.baseline"


def _client() -> docker.APIClient:
    return docker.APIClient(version="auto", max_pool_size=32, **docker.utils.kwargs_from_env())


def _wait(predicate: Callable[[], bool], timeout_s: float = 600, interval_s: float = 0.02) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("baseline did not finish")
        time.sleep(interval_s)


def _ready_count(api: docker.APIClient, run: str, healthy: bool) -> int:
    listed = api.containers(filters={"label": [f"{BASELINE_LABEL}={run}"], "status": "running"})
    if healthy:
        return sum(1 for c in listed if "(healthy)" in c.get("Status", ""))
    return len(listed)


def remove_baseline(run: str) -> None:
    api = _client()
    for container in api.containers(all=True, filters={"label": [f"{BASELINE_LABEL}={run}"]}):
        api.remove_container(container["Id"], force=True)
    api.close()


def docker_py_create_start(
    count: int, threads: int, image: str, run: str, healthcheck: dict[str, Any] | None = None
) -> float:
    """Seconds to create and start `count` containers with `threads` in parallel, until all
    run (and are healthy, with a healthcheck). The floor for a cold converge."""
    api = _client()

    def one(index: int) -> None:
        created = api.create_container(
            image,
            name=f"bench-{run}-{index}",
            labels={BASELINE_LABEL: run},
            healthcheck=healthcheck,
            host_config=api.create_host_config(),
        )
        api.start(created["Id"])

    # Like Berth's side of the benchmark, wait on Docker's events, not by polling its list;
    # read from the start: the engine drops events for a reader that falls behind, and
    # 200 containers' events left unread while they were made lost some `healthy` ones.
    # Only the one action is sent (as to Berth's side's reader), not every probe's exec.
    events = api.events(
        decode=True,
        filters={
            "type": "container",
            "label": [f"{BASELINE_LABEL}={run}"],
            "event": ["health_status: healthy"],
        },
    )
    healthy: set[str] = set()
    all_healthy = threading.Event()

    def follow() -> None:
        for event in events:
            if event.get("Action") == "health_status: healthy":
                healthy.add(event["Actor"]["ID"])
                if len(healthy) >= count:
                    all_healthy.set()
                    return

    follower = threading.Thread(target=follow, daemon=True)
    if healthcheck is not None:
        follower.start()
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))
    if healthcheck is not None and not all_healthy.wait(600):
        raise TimeoutError(f"{len(healthy)} of {count} baseline containers healthy in 600 s")
    elapsed = time.monotonic() - started
    events.close()
    assert _ready_count(api, run, healthcheck is not None) >= count
    api.close()
    return elapsed


def docker_py_replace(count: int, threads: int, image: str, run: str) -> float:
    """Seconds to replace `count` running baseline containers (remove, create, start)."""
    api = _client()
    existing = api.containers(filters={"label": [f"{BASELINE_LABEL}={run}"]})

    def one(container: dict[str, Any]) -> None:
        name = container["Names"][0].lstrip("/")
        api.stop(container["Id"], timeout=10)
        api.remove_container(container["Id"], force=True)
        created = api.create_container(image, name=name, labels={BASELINE_LABEL: run})
        api.start(created["Id"])

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, existing))
    _wait(lambda: _ready_count(api, run, False) >= count)
    elapsed = time.monotonic() - started
    api.close()
    return elapsed


def docker_py_single(image: str, run: str, index: int) -> float:
    """Seconds for one create + start of one container (the latency floor)."""
    api = _client()
    started = time.monotonic()
    created = api.create_container(
        image, name=f"bench-{run}-single-{index}", labels={BASELINE_LABEL: run}
    )
    api.start(created["Id"])
    elapsed = time.monotonic() - started
    api.close()
    return elapsed


def swarm_service(count: int, image: str, run: str, timeout_s: float = 900) -> float | None:
    """Seconds for a Swarm service of `count` replicas to report count/count running.

    Initialises swarm mode on the engine if needed and leaves it again afterwards if it
    did. Returns None if swarm mode cannot be used here."""
    client = docker.from_env(version="auto")
    joined_here = False
    try:
        if client.info().get("Swarm", {}).get("LocalNodeState") != "active":
            client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
            joined_here = True
        started = time.monotonic()
        service = client.services.create(
            image,
            name=f"bench-{run}",
            mode=docker.types.ServiceMode("replicated", replicas=count),
            labels={BASELINE_LABEL: run},
            container_labels={BASELINE_LABEL: run},
        )

        def all_running() -> bool:
            tasks = service.tasks(filters={"desired-state": "running"})
            return sum(1 for t in tasks if t["Status"]["State"] == "running") >= count

        _wait(all_running, timeout_s=timeout_s, interval_s=0.1)
        elapsed = time.monotonic() - started
        service.remove()
        _wait(
            lambda: (
                not client.containers.list(
                    all=True, sparse=True, filters={"label": f"{BASELINE_LABEL}={run}"}
                )
            ),
            timeout_s=300,
            interval_s=0.2,
        )
        return elapsed
    except docker.errors.APIError:
        return None
    finally:
        if joined_here:
            client.swarm.leave(force=True)
        client.close()


# --- the swarm benchmark's floor (`controller.bench.swarm`): services made by hand ------------
def swarm_services(
    url: str,
    run_id: str,
    total: int,
    threads: int,
    image: str = "berth-example/busybox:1",
    node_ids: tuple[str, ...] = (),
) -> None:
    """`total` one-task services, as Berth makes a replica (dnsrr, restart any), created by
    hand on the swarm whose manager is at `url`; service `i` on `node_ids[i % n]` if given."""
    client = docker.APIClient(base_url=url, version="auto", timeout=120, max_pool_size=32)

    def create(index: int) -> None:
        placement = (
            {"Placement": {"Constraints": [f"node.id=={node_ids[index % len(node_ids)]}"]}}
            if node_ids
            else {}
        )
        client.create_service(
            task_template={
                "ContainerSpec": {"Image": image, "Labels": {BASELINE_LABEL: run_id}},
                "RestartPolicy": {"Condition": "any", "Delay": 1_000_000_000, "MaxAttempts": 0},
                **placement,
            },
            name=f"bb{run_id}-{index}",
            labels={BASELINE_LABEL: run_id},
            mode={"Replicated": {"Replicas": 1}},
            endpoint_spec={"Mode": "dnsrr"},
        )

    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(create, range(total)))
    finally:
        client.close()


def swarm_running(url: str, run_id: str, off: str = "") -> dict[str, str]:
    """The hand-made services with a running task not on the node at address `off`:
    service id -> its node's address."""
    client = docker.APIClient(base_url=url, version="auto", timeout=30)
    try:
        nodes = {n["ID"]: n["Status"]["Addr"] for n in client.nodes()}
        mine = {s["ID"] for s in client.services(filters={"label": [f"{BASELINE_LABEL}={run_id}"]})}
        tasks = client.tasks(filters={"desired-state": "running"})
    finally:
        client.close()
    running: dict[str, str] = {}
    for task in tasks:
        where = nodes.get(task.get("NodeID", ""), "")
        if task["ServiceID"] in mine and task["Status"]["State"] == "running" and where != off:
            running[task["ServiceID"]] = where
    return running


def remove_swarm_services(url: str, run_id: str) -> None:
    client = docker.APIClient(base_url=url, version="auto", timeout=60)
    try:
        for service in client.services(filters={"label": [f"{BASELINE_LABEL}={run_id}"]}):
            client.remove_service(service["ID"])
    finally:
        client.close()


def swarm_node_ids(url: str) -> tuple[str, ...]:
    client = docker.APIClient(base_url=url, version="auto", timeout=30)
    try:
        return tuple(sorted(str(n["ID"]) for n in client.nodes()))
    finally:
        client.close()


def swarm_rolling_service(url: str, run_id: str, replicas: int) -> str:
    """One replicated service of `replicas` tasks, updated start-first one task at a time:
    Swarm's own rollout, to set beside Berth's. No `MaxReplicas`: with one task per node on
    as many nodes as tasks, a start-first update has nowhere to start the new task."""
    client = docker.APIClient(base_url=url, version="auto", timeout=60)
    try:
        made = client.create_service(
            task_template={
                "ContainerSpec": {"Image": "berth-example/busybox:1", "Env": ["ROUND=0"]},
                "RestartPolicy": {"Condition": "any", "Delay": 1_000_000_000, "MaxAttempts": 0},
            },
            name=f"roll{run_id}",
            labels={BASELINE_LABEL: run_id},
            mode={"Replicated": {"Replicas": replicas}},
            endpoint_spec={"Mode": "dnsrr"},
            update_config={"Parallelism": 1, "Order": "start-first", "FailureAction": "pause"},
        )
        return str(made["ID"])
    finally:
        client.close()


def swarm_rolling_update(url: str, service_id: str, round_: int) -> float:
    """Seconds from a new env value until Swarm says the service's update completed."""
    client = docker.APIClient(base_url=url, version="auto", timeout=60)
    try:
        service = client.inspect_service(service_id)
        template = service["Spec"]["TaskTemplate"]
        template["ContainerSpec"]["Env"] = [f"ROUND={round_}"]
        started = time.monotonic()
        client.update_service(
            service_id,
            version=int(service["Version"]["Index"]),
            task_template=template,
            name=service["Spec"]["Name"],
            labels=service["Spec"].get("Labels"),
            mode=service["Spec"]["Mode"],
            endpoint_spec=service["Spec"].get("EndpointSpec"),
            update_config=service["Spec"].get("UpdateConfig"),
        )
        deadline = started + 300
        while time.monotonic() < deadline:
            state = (client.inspect_service(service_id).get("UpdateStatus") or {}).get("State")
            if state == "completed":
                return time.monotonic() - started
            time.sleep(0.05)
        raise TimeoutError("Swarm's rolling update did not complete within 300 s")
    finally:
        client.close()
