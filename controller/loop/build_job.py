"""One build, start to end: fetch the source, build the image, report as it goes.

Run by the build dispatcher (`controller.loop.builder`) in a thread of its own, never in a
reconcile worker. Steps: resolve the revision (`pulling_source`), reuse the image if that
revision was built before, fetch it into a fresh workspace, check the Dockerfile, `docker
build` (`building`, with "step N/M" progress). A heartbeat thread writes the output in
batches every `FLUSH_S` (at most five writes a second) with the progress, and learns
from the same write whether an operator cancelled the build or this term lost it: then
the running `git` or `docker build` is killed. The job returns a `BuildResult`; the
dispatcher records it.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from controller.loop.ports import BuildJobStore, ImageBuilder, SourceFetcher, WorkspaceArea
from controller.model.builds import BuildRecord, BuildResult, BuildStatus
from controller.model.errors import (
    BerthError,
    BuildCancelled,
    BuildStepFailed,
    Deposed,
    PermanentError,
    SourceInvalid,
)
from controller.model.names import (
    build_image,
)
from controller.model.records import Fence
from controller.model.settings import Settings
from controller.model.source import SourceSpec, build_key
from controller.policy.builds import after_failure, parse_step

log = structlog.get_logger("berth.builds")
FLUSH_S = 0.2
_CREDENTIALS = re.compile(r"(\w+://)[^/@\s]+@")


def source_name(archive: str | Path) -> str:
    return f"archive sha256:{archive[:12]}" if isinstance(archive, str) else f"archive {archive}"


class BuildLog:
    """Output lines and progress of one build, taken by the heartbeat in batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[int, float, str, str]] = []
        self._seq = 0
        self.progress: dict[str, Any] = {"step": "pulling_source", "progress": 0}

    def line(self, stream: str, text: str) -> None:
        text = _CREDENTIALS.sub(r"\1***@", text)  # a URL's credentials never reach the log
        with self._lock:
            self._seq += 1
            self._pending.append((self._seq, time.time(), stream, text))
        step = parse_step(text)
        if step is not None:
            number, total, _ = step
            self.update(step=f"step {number}/{total}", progress=(number - 1) * 100 // max(total, 1))

    def note(self, text: str) -> None:
        self.line("berth", text)

    def update(self, **progress: Any) -> None:
        with self._lock:
            self.progress = {**self.progress, **progress}

    def take(self) -> tuple[list[tuple[int, float, str, str]], dict[str, Any]]:
        with self._lock:
            pending, self._pending = self._pending, []
            return pending, dict(self.progress)

    def put_back(self, lines: list[tuple[int, float, str, str]]) -> None:
        """Lines whose write failed go out with the next batch."""
        with self._lock:
            self._pending = lines + self._pending


class BuildJob:
    def __init__(
        self,
        settings: Settings,
        store: BuildJobStore,
        git: SourceFetcher,
        builder: ImageBuilder,
        workspaces: WorkspaceArea,
        fence: Fence,
        build: BuildRecord,
        stopping: threading.Event,
    ) -> None:
        self.settings = settings
        self.store = store
        self.git = git
        self.builder = builder
        self.workspaces = workspaces
        self.fence = fence
        self.build = build
        self.stopping = stopping
        self.log = BuildLog()
        self.cancelled = threading.Event()  # set: kill what runs, stop
        self.lost = threading.Event()  # this term no longer owns the build: record nothing
        self._cancel_requested = False

    # --- the job ----------------------------------------------------------------------------
    def run(self) -> BuildResult:
        heartbeat = threading.Thread(
            target=self._heartbeat, name=f"build-{self.build.id}-beat", daemon=True
        )
        heartbeat.start()
        workspace = self.workspaces.fresh(self.build.id, self.build.attempts)
        try:
            result = self._build(workspace)
        except BuildCancelled:
            result = self._interrupted()
        except BuildStepFailed as error:
            result = BuildResult(BuildStatus.FAILED, error=str(error), exit_code=error.exit_code)
        except PermanentError as error:
            result = BuildResult(BuildStatus.FAILED, error=str(error))
        except Deposed:
            self.lost.set()
            result = BuildResult(BuildStatus.QUEUED, error="interrupted: leadership lost")
        except BerthError as error:
            result = self._transient(str(error))
        except Exception as error:  # a bug: retried like a transient failure, and logged
            log.exception("build job failed unexpectedly", build_id=self.build.id)
            result = self._transient(f"internal error: {error!r}")
        finally:
            self.workspaces.discard(self.build.id)
        self.log.note(
            f"build {self.build.id}: {result.status}"
            + (f": {result.error}" if result.error else "")
        )
        self.cancelled.set()
        heartbeat.join(timeout=5.0)
        self._flush()  # the last lines, before the row says the build ended
        return result

    def _build(self, workspace: Path) -> BuildResult:
        build = self.build
        source = SourceSpec.model_validate(build.source)
        self.log.note(f"build {build.id}, attempt {build.attempts}: {source.describe()}")
        revision, archive = self._resolve(source)
        tag = build_image(build.deployment, build_key(revision, source), self.settings.cluster)
        self.log.update(revision=revision, image=tag)
        if self.builder.image_present(tag):
            self.log.note(f"{tag} was built from this revision before: reused, not rebuilt")
            image = self._publish(tag)
            return BuildResult(BuildStatus.SUCCEEDED, image=image, revision=revision, cached=True)
        root = workspace / "src"
        if source.git is not None:
            self.log.note(f"fetching {source.describe()} at {revision[:12]}")
            revision = self.git.checkout(
                source.git.url, source.git.ref, revision, root, self.log.line, self.cancelled
            )
            files = self.workspaces.count_files(root)
        else:
            files = self._unpack(archive, revision, workspace, root)
        self.log.update(files=files, revision=revision)
        context, dockerfile = root / source.context, root / source.dockerfile
        if not context.is_dir():
            raise SourceInvalid(
                f"source.context: {source.context!r} is not a directory at {revision[:12]}"
            )
        if not dockerfile.is_file():
            raise SourceInvalid(
                f"source.dockerfile: {source.dockerfile!r} not found at {revision[:12]}"
            )
        self._check_cancel()
        self.log.update(step="building", progress=0)
        self.builder.build(context, dockerfile, tag, self.log.line, self.cancelled)
        self.log.note(f"built {tag} from {revision[:12]} ({files} files)")
        return BuildResult(BuildStatus.SUCCEEDED, image=self._publish(tag), revision=revision)

    def _publish(self, tag: str) -> str:
        """With a registry (BERTH_REGISTRY): `tag` pushed there, run pinned by digest on every
        node; without, `tag` as built (one engine)."""
        registry = self.settings.registry
        if not registry:
            return tag
        self._check_cancel()
        self.log.update(step="pushing")
        pinned = self.builder.publish(tag, registry)
        self.log.note(f"pushed {tag} to {registry}: runs as {pinned}")
        return pinned

    def _unpack(self, archive: str | Path, revision: str, workspace: Path, root: Path) -> int:
        """Unpack an uploaded archive (read from Postgres, its sha256 checked) or a host
        file into `root`; the number of files."""
        if isinstance(archive, str):
            local = workspace / "archive"
            with local.open("wb") as target:
                self.store.read_archive(archive, target)
            actual = self.workspaces.file_sha256(local)
            if actual != revision:
                raise SourceInvalid(
                    f"source.archive.sha256: the stored archive has sha256 {actual}, not {revision}"
                )
        else:
            local = archive
        self.log.note(f"unpacking {source_name(archive)}")
        return self.workspaces.unpack(local, root, self.settings.archive_max_bytes)

    def _resolve(self, source: SourceSpec) -> tuple[str, Any]:
        """The revision to build and, for an archive, where to read it from."""
        if source.git is not None:
            commit = self.git.resolve(source.git.url, source.git.ref, self.log.line, self.cancelled)
            self.log.note(f"{source.git.ref or 'HEAD'} is {commit}")
            return commit, None
        archive = source.archive
        assert archive is not None
        if archive.path is None:
            assert archive.sha256 is not None
            return archive.sha256, archive.sha256  # uploaded: read from Postgres
        path = self.workspaces.allowed_archive(archive.path, self.settings.archive_dirs)
        actual = self.workspaces.file_sha256(path)
        if archive.sha256 is not None and actual != archive.sha256:
            raise SourceInvalid(
                f"source.archive.sha256: {archive.path} has sha256 {actual}, not {archive.sha256}"
            )
        return actual, path

    # --- ends ---------------------------------------------------------------------------------
    def _transient(self, error: str) -> BuildResult:
        settings = self.settings
        after = after_failure(
            self.build.attempts,
            settings.build_max_attempts,
            settings.build_retry_base_s,
            settings.build_retry_max_s,
        )
        if after.status == BuildStatus.DEAD:
            attempts = f"attempt {self.build.attempts} of {settings.build_max_attempts}"
            error = f"{error} ({attempts}: dead-lettered)"
        else:
            self.log.note(f"transient failure, retrying in {after.retry_after_s:.1f}s: {error}")
        return BuildResult(after.status, error=error, retry_after_s=after.retry_after_s)

    def _interrupted(self) -> BuildResult:
        if self._cancel_requested:
            return BuildResult(
                BuildStatus.CANCELLED, error="cancelled by an operator while running"
            )
        if self.lost.is_set():
            return BuildResult(BuildStatus.QUEUED, error="interrupted: leadership lost")
        return BuildResult(
            BuildStatus.QUEUED, error="interrupted: daemon stopping", retry_after_s=0.0
        )

    def _check_cancel(self) -> None:
        if self.cancelled.is_set():
            raise BuildCancelled("cancelled")

    # --- the heartbeat ------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        while not self.cancelled.wait(FLUSH_S):
            if self.stopping.is_set():
                self.cancelled.set()
                return
            self._flush()

    def _flush(self) -> None:
        if self.lost.is_set():
            return
        logs, progress = self.log.take()
        try:
            answer = self.store.build_heartbeat(self.fence, self.build.id, progress, logs)
        except Deposed:
            answer = None
        except BerthError as error:  # Postgres away: keep building, keep the lines for later
            log.warning("build heartbeat failed", build_id=self.build.id, error=str(error))
            self.log.put_back(logs)
            return
        if answer is None:
            self.lost.set()
            self.cancelled.set()
        elif answer and not self._cancel_requested:
            self._cancel_requested = True
            self.log.note("cancel requested: stopping")
            self.cancelled.set()
