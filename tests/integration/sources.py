"""Sources for the build tests: local git repositories, a `git daemon` on 127.0.0.1, and
tarballs (some deliberately unsafe). Dockerfiles build FROM the local example image."""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from controller.gateways.processes import free_port
from tests.integration.conftest import EXAMPLE_IMAGE, wait_for

APP = "echo serving; exec sleep 3600\n"


def dockerfile(*run_lines: str) -> str:
    runs = "".join(f"RUN {line}\n" for line in run_lines)
    return f'FROM {EXAMPLE_IMAGE}\n{runs}COPY app.sh /app.sh\nCMD ["sh", "/app.sh"]\n'


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@berth.test", "-c", "user.name=berth test",
         *args],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return result.stdout.strip()


def make_repo(repo: Path, files: dict[str, str], branch: str = "main") -> str:
    """A git repository at `repo` with one commit of `files`; its commit."""
    repo.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", branch, str(repo)], check=True)
    return commit(repo, files, "initial")


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@contextmanager
def git_daemon(base: Path) -> Iterator[str]:
    """`git daemon` serving every repository under `base` on 127.0.0.1; its git:// base URL."""
    port = free_port()
    process = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base}",
         "--listen=127.0.0.1", f"--port={port}", str(base)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"git://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(port), what="git daemon listening")
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _answers(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def make_tar(path: Path, files: dict[str, str], extra: tarfile.TarInfo | None = None) -> Path:
    """A tar.gz of `files` (and one extra member, e.g. `../escape`)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra is not None:
            tar.addfile(extra, io.BytesIO(b"x" * extra.size))
    return path
