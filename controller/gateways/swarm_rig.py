"""A Docker Swarm of several nodes on one machine, for the tests and the benchmarks.

Each node is a network namespace of its own with one `dockerd` in it (own socket, data and
exec roots, so its own containerd; own bridge, cgroup parent and address). The nodes' link
is a bridge inside a "switch" namespace, with a veth to the root namespace so that Berth
and the tests reach every node at its address (a bridge in the root namespace would be
subject to the main engine's `FORWARD DROP`). Every dockerd is started with
`nsenter --net=` (`ip netns exec` remounts /sys and dockerd fails: "Devices cgroup isn't
mounted"), and every node is a manager, so the swarm keeps its quorum when one is lost.
Images are copied from the main engine (`docker save | docker load`): nothing is pulled
from outside; a registry the tests start at `registry_host` (on the rig's link, plain HTTP:
the nodes trust the rig's subnet as an insecure registry) serves the images Berth builds.

This kernel has no IPVS: VIP endpoints and the routing mesh accept services whose ports
never answer. Services on the rig use `endpoint_mode: dnsrr` and host-mode published
ports, reached at their node's address. Traffic goes only to the addresses of the
namespaces made here. `close` removes everything made: processes, mounts, cgroups,
namespaces (their veths with them) and folders; `leftovers` reports what would remain.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker

from controller.gateways.engines import await_engine

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=60)


@dataclass
class RigNode:
    """One node: its namespace, address, engine and the process serving it."""

    name: str
    namespace: str
    address: str
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.folder / 'docker.sock'}"

    def client(self, timeout_s: int = 30) -> docker.APIClient:
        return docker.APIClient(base_url=self.url, version="auto", timeout=timeout_s)


class SwarmRig:
    """`nodes` engines joined into one swarm (all managers); `close()` undoes everything."""

    def __init__(self, nodes: int = 3, images: tuple[str, ...] = ()) -> None:
        self.prefix = f"bs{uuid.uuid4().hex[:4]}"
        self.subnet = f"10.{232 + int(uuid.uuid4().hex[:2], 16) % 16}.{int(self.prefix[2:4], 16)}"
        self.folder = Path(tempfile.mkdtemp(prefix="bs", dir="/tmp"))  # short: sockets
        self.switch = f"{self.prefix}sw"
        self.host_address = f"{self.subnet}.254"
        self.nodes = [
            RigNode(
                f"node-{index}",
                f"{self.prefix}n{index}",
                f"{self.subnet}.{index}",
                self.folder / f"n{index}",
            )
            for index in range(1, nodes + 1)
        ]
        try:
            self._link()
            for node in self.nodes:
                self._start(node)
            self._join()
            self._load(images)
        except BaseException:
            self.close()
            raise

    # --- bringing it up ---------------------------------------------------------------------
    def _link(self) -> None:
        _run("ip", "netns", "add", self.switch)
        self._in(self.switch, "ip", "link", "set", "lo", "up")
        self._in(self.switch, "ip", "link", "add", "sw0", "type", "bridge")
        self._in(self.switch, "ip", "link", "set", "sw0", "up")
        self._plug(f"{self.prefix}h", f"{self.prefix}hs")  # the root namespace's port
        _run("ip", "addr", "add", f"{self.host_address}/24", "dev", f"{self.prefix}h")
        _run("ip", "link", "set", f"{self.prefix}h", "up")
        for index, node in enumerate(self.nodes, 1):
            _run("ip", "netns", "add", node.namespace)
            inside = f"{self.prefix}n{index}e"
            self._plug(inside, f"{self.prefix}n{index}s")
            _run("ip", "link", "set", inside, "netns", node.namespace)
            self._in(node.namespace, "ip", "link", "set", inside, "name", "eth0")
            self._in(node.namespace, "ip", "addr", "add", f"{node.address}/24", "dev", "eth0")
            self._in(node.namespace, "ip", "link", "set", "eth0", "up")
            self._in(node.namespace, "ip", "link", "set", "lo", "up")
            # The engine's own bridge, made first (its default one would be made the same).
            self._in(node.namespace, "ip", "link", "add", "nb0", "type", "bridge")
            self._in(node.namespace, "ip", "addr", "add", f"172.31.{index}.1/24", "dev", "nb0")
            self._in(node.namespace, "ip", "link", "set", "nb0", "up")

    def _plug(self, outside: str, switch_side: str) -> None:
        """A veth pair whose `switch_side` end is on the switch's bridge."""
        _run("ip", "link", "add", outside, "type", "veth", "peer", "name", switch_side)
        _run("ip", "link", "set", switch_side, "netns", self.switch)
        self._in(self.switch, "ip", "link", "set", switch_side, "master", "sw0", "up")

    @staticmethod
    def _in(namespace: str, *argv: str) -> None:
        _run("ip", "netns", "exec", namespace, *argv)

    def _start(self, node: RigNode) -> None:
        node.folder.mkdir(parents=True)
        log = (node.folder / "dockerd.log").open("ab")
        node.process = subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{node.namespace}",
                "dockerd",
                "--host",
                node.url,
                "--data-root",
                str(node.folder / "data"),
                "--exec-root",
                str(node.folder / "exec"),
                "--pidfile",
                str(node.folder / "docker.pid"),
                "--bridge",
                "nb0",
                "--exec-opt",
                "native.cgroupdriver=cgroupfs",
                "--cgroup-parent",
                f"/{node.namespace}",
                # A registry the tests start on the rig's link speaks plain HTTP.
                "--insecure-registry",
                f"{self.subnet}.0/24",
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        await_engine(node.client, node.process, lambda: self.log_tail(node), START_TIMEOUT_S)

    def _join(self) -> None:
        first = self.nodes[0].client()
        try:
            first.init_swarm(advertise_addr=self.nodes[0].address, listen_addr="0.0.0.0:2377")
            token = first.inspect_swarm()["JoinTokens"]["Manager"]
        finally:
            first.close()
        for node in self.nodes[1:]:
            client = node.client()
            try:
                client.join_swarm(
                    [f"{self.nodes[0].address}:2377"],
                    token,
                    advertise_addr=node.address,
                    listen_addr="0.0.0.0:2377",
                )
            finally:
                client.close()

    def _load(self, images: tuple[str, ...]) -> None:
        main = docker.APIClient(version="auto", timeout=120)
        try:
            archives = [b"".join(main.get_image(image)) for image in images]
        finally:
            main.close()
        for node in self.nodes:
            client = node.client(120)
            try:
                for archive in archives:
                    client.load_image(archive)
            finally:
                client.close()

    # --- using it ---------------------------------------------------------------------------
    @property
    def registry_host(self) -> str:
        """The root namespace's address on the rig's link: a registry listening there is
        reached by every node."""
        return self.host_address

    def manager(self) -> RigNode:
        return self.nodes[0]

    def cut(self, node: RigNode) -> None:
        """Unplug the node from the switch: to the others it is a dead host (its engine and
        containers live on, as a partitioned host's would)."""
        self._in(self.switch, "ip", "link", "set", self._switch_port(node), "down")

    def reconnect(self, node: RigNode) -> None:
        self._in(self.switch, "ip", "link", "set", self._switch_port(node), "up")

    def _switch_port(self, node: RigNode) -> str:
        return f"{self.prefix}n{self.nodes.index(node) + 1}s"

    def load_on(self, node: RigNode, image: str, tag: str) -> None:
        """`image` from this machine's engine, tagged `tag`, on `node` only."""
        main = docker.APIClient(version="auto", timeout=120)
        try:
            archive = b"".join(main.get_image(image))
        finally:
            main.close()
        client = node.client(120)
        try:
            client.load_image(archive)
            repository, _, version = tag.rpartition(":")
            client.tag(image, repository, version)
        finally:
            client.close()

    def running_labelled(self, node: RigNode, label: str) -> int:
        """Containers running on `node` that carry `label` (its own engine's answer)."""
        client = node.client()
        try:
            return len(client.containers(filters={"label": label, "status": "running"}))
        finally:
            client.close()

    def ready_nodes(self) -> int:
        """Nodes the manager reports ready; 0 while the manager cannot answer (a node just
        reconnected: Swarm's raft answers 500 "context deadline exceeded" until it has its
        quorum back), so that the callers' polls go on until their deadline."""
        client = self.manager().client()
        try:
            return sum(1 for n in client.nodes() if n["Status"]["State"] == "ready")
        except docker.errors.APIError as error:
            if error.status_code is not None and error.status_code >= 500:
                return 0
            raise
        finally:
            client.close()

    def task_container(self, service: str) -> tuple[RigNode, str]:
        """The node running `service`'s task, and the task's container id there."""
        client = self.manager().client()
        try:
            tasks = client.tasks(filters={"service": service, "desired-state": "running"})
            addresses = {n["ID"]: n["Status"]["Addr"] for n in client.nodes()}
        finally:
            client.close()
        running = [t for t in tasks if t["Status"]["State"] == "running"]
        if not running:
            raise LookupError(f"service {service} has no running task")
        task = running[0]
        node = next(n for n in self.nodes if n.address == addresses[task["NodeID"]])
        return node, str(task["Status"]["ContainerStatus"]["ContainerID"])

    @staticmethod
    def execute(node: RigNode, container: str, *argv: str) -> str:
        """Run `argv` in a container on `node`; its output (raises on a non-zero exit)."""
        client = node.client()
        try:
            made = client.exec_create(container, list(argv))
            output = client.exec_start(made["Id"]).decode(errors="replace")
            code = client.exec_inspect(made["Id"])["ExitCode"]
        finally:
            client.close()
        if code != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {code}: {output}")
        return str(output)

    @staticmethod
    def log_tail(node: RigNode) -> str:
        path = node.folder / "dockerd.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    # --- taking it down ---------------------------------------------------------------------
    def close(self) -> None:
        for node in self.nodes:
            self._remove_containers(node)
        for node in self.nodes:
            self._stop(node)
        for node in self.nodes:
            for root in (node.folder / "exec", node.folder / "data"):
                _run("umount", "-R", "-l", str(root), check=False)
        self._remove_cgroups()
        for namespace in [node.namespace for node in self.nodes] + [self.switch]:
            _run("ip", "netns", "del", namespace, check=False)  # their veths go with them
        _run("ip", "link", "del", f"{self.prefix}h", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    @staticmethod
    def _remove_containers(node: RigNode) -> None:
        """Whatever runs on a node that still answers: its services' tasks and containers."""
        if node.process is None or node.process.poll() is not None:
            return
        with contextlib.suppress(Exception):
            client = node.client(10)
            try:
                with contextlib.suppress(Exception):
                    for service in client.services():
                        client.remove_service(service["ID"])
                for container in client.containers(all=True, quiet=True):
                    client.remove_container(container["Id"], force=True)
            finally:
                client.close()

    def _stop(self, node: RigNode) -> None:
        """SIGTERM the engine, then SIGKILL whatever of it is left (its containerd, the
        shims that keep containers serving without it)."""
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGTERM)
            try:
                node.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(10)
        for pid in self._processes_of(node):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    @staticmethod
    def _processes_of(node: RigNode) -> list[int]:
        """Processes whose command line names this node's folder (its containerd and shims)
        or that run in its cgroup parent (its containers)."""
        found = []
        marker = str(node.folder).encode()
        cgroup = f"/{node.namespace}/".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if (
                    marker in (entry / "cmdline").read_bytes()
                    or cgroup in (entry / "cgroup").read_bytes()
                ):
                    found.append(int(entry.name))
        return found

    def _remove_cgroups(self) -> None:
        for node in self.nodes:
            for controller in CGROUP_ROOT.glob(f"*/{node.namespace}"):
                for directory in sorted(controller.rglob("*"), reverse=True):
                    if directory.is_dir():
                        with contextlib.suppress(OSError):
                            directory.rmdir()
                with contextlib.suppress(OSError):
                    controller.rmdir()

    def leftovers(self) -> list[str]:
        """What `close` should have removed and did not (empty when all is gone)."""
        left = []
        namespaces = _run("ip", "netns", "list", check=False).stdout
        left += [
            f"namespace {line.split()[0]}"
            for line in namespaces.splitlines()
            if line.startswith(self.prefix)
        ]
        links = _run("ip", "-o", "link", "show", check=False).stdout
        left += [
            f"link {line.split(':')[1].strip()}"
            for line in links.splitlines()
            if self.prefix in line
        ]
        mounts = Path("/proc/mounts").read_text()
        left += [
            f"mount {line.split()[1]}" for line in mounts.splitlines() if str(self.folder) in line
        ]
        left += [
            f"cgroup {path}"
            for node in self.nodes
            for path in CGROUP_ROOT.glob(f"*/{node.namespace}")
        ]
        left += [f"process {pid}" for node in self.nodes for pid in self._processes_of(node)]
        if self.folder.exists():
            left.append(f"folder {self.folder}")
        return left
