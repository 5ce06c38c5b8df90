"""Build workspaces on the local filesystem: per-build directories, safe archive unpacking,
host archive paths checked against the allowed directories.

Used by the build job (`controller.loop.build_job`) and the dispatcher (a crashed build's
leftover workspace is discarded). Unpacking refuses, naming the member, anything that
could write outside the workspace (absolute paths, `..`, links pointing out, devices),
and stops at `max_bytes` unpacked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from controller.model.errors import SourceInvalid

CHUNK = 1024 * 1024


class Workspaces:
    def __init__(self, root: Path, cluster: str) -> None:
        self.root = root
        self.cluster = cluster

    def fresh(self, build_id: int, attempt: int) -> Path:
        """An empty directory for this attempt of a build (one per attempt: a deposed
        leader still writing its own never meets the next attempt's)."""
        directory = self.root / f"{self.cluster}-build-{build_id}-{attempt}"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        return directory

    def discard(self, build_id: int) -> None:
        """Remove every attempt's workspace of a build (its end, or a crashed leader's)."""
        for directory in self.root.glob(f"{self.cluster}-build-{build_id}-*"):
            shutil.rmtree(directory, ignore_errors=True)

    # The job reaches the filesystem through this object only (the fakes answer the same).
    def count_files(self, directory: Path) -> int:
        return count_files(directory)

    def allowed_archive(self, path_text: str, allowed: list[Path]) -> Path:
        return allowed_archive(path_text, allowed)

    def file_sha256(self, path: Path) -> str:
        return file_sha256(path)

    def unpack(self, archive: Path, directory: Path, max_bytes: int) -> int:
        return unpack(archive, directory, max_bytes)


def count_files(directory: Path) -> int:
    total = 0
    for _root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if d != ".git"]
        total += len(files)
    return total


def allowed_archive(path_text: str, allowed: list[Path]) -> Path:
    """The host archive at `path_text`, if it lies inside an allowed directory (symlinks
    resolved first); otherwise SourceInvalid naming the field."""
    if not allowed:
        raise SourceInvalid(
            "source.archive.path: host archive paths are disabled; an administrator allows "
            "directories with BERTH_ARCHIVE_DIRS (or upload it with `berth upload`)"
        )
    resolved = Path(path_text).resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in allowed):
        roots = ", ".join(str(root) for root in allowed)
        raise SourceInvalid(
            f"source.archive.path: {path_text} is outside the allowed directories ({roots})"
        )
    if not resolved.is_file():
        raise SourceInvalid(f"source.archive.path: {path_text} is not a file")
    return resolved


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unpack(archive: Path, directory: Path, max_bytes: int) -> int:
    """Unpack a tar or tar.gz into `directory` after checking every member; returns the
    number of files. Nothing is written unless every member is safe."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            total = 0
            for member in members:
                _check_member(member)
                total += max(member.size, 0)
                if total > max_bytes:
                    raise SourceInvalid(
                        f"source.archive: unpacks to more than {max_bytes} bytes "
                        "(BERTH_ARCHIVE_MAX_BYTES)"
                    )
            tar.extractall(directory, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise SourceInvalid(f"source.archive: not a readable tar or tar.gz: {error}") from error
    return sum(1 for member in members if member.isfile())


def _check_member(member: tarfile.TarInfo) -> None:
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts:
        raise SourceInvalid(
            f"source.archive: member {member.name!r} would be written outside the workspace"
        )
    if member.issym() or member.islnk():
        target = PurePosixPath(member.linkname)
        if target.is_absolute() or ".." in (name.parent / target).parts:
            raise SourceInvalid(
                f"source.archive: link {member.name!r} -> {member.linkname!r} "
                "points outside the workspace"
            )
    if member.isdev() or member.isfifo():
        raise SourceInvalid(f"source.archive: member {member.name!r} is a device or fifo")
