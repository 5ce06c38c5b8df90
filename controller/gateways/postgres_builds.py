"""The Postgres gateway's build side: the build queue, build rows and logs, uploaded archives.

A base of `controller.gateways.postgres.Database`, so the loop and the CLI hold one gateway.
Called by the source stage of a pass (`current_build`, `enqueue_build`), the build
dispatcher and its jobs (`claim_build`, `build_heartbeat`, `finish_build`, orphans), and the
CLI (`builds`, `build_logs`, `cancel_builds`, `retry_build`, `store_archive`). Writes of
the leader are fenced by its term like every other write. Uploaded archives are Postgres
large objects: every replica reads them through the connection it already has, on any
host, with no shared filesystem to set up, and backups include them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, BinaryIO

import psycopg

from controller.gateways.postgres_pool import Store
from controller.gateways.postgres_sql import adapt, queries
from controller.model.builds import BuildRecord, BuildResult
from controller.model.errors import SourceInvalid
from controller.model.names import advisory_key
from controller.model.records import Fence

ARCHIVE_CHUNK = 1024 * 1024
BUILD_QUEUE_LOCK = "berth.build-queue"


class BuildStore(Store):
    # --- the source stage of a pass -----------------------------------------------------
    def current_build(self, deployment: str) -> BuildRecord | None:
        rows = self._run("select_current_build", {"deployment": deployment})
        return BuildRecord.from_row(rows[0]) if rows else None

    def enqueue_build(
        self,
        fence: Fence | None,
        deployment: str,
        generation: int,
        source: dict[str, Any],
        source_key: str,
        priority: int,
        revision: str | None = None,
        requested_by: str = "berth",
    ) -> BuildRecord:
        """Queue a build of `source` (superseding the deployment's builds of other sources);
        fenced by the leader's term, or unfenced for an operator's `berth retry`."""
        params = {
            "deployment": deployment,
            "generation": generation,
            "source": source,
            "source_key": source_key,
            "priority": priority,
            "revision": revision,
            "requested_by": requested_by,
        }

        def work(conn: psycopg.Connection[Any]) -> BuildRecord:
            if fence is not None:
                self._fence(conn, fence)
            conn.execute(queries()["supersede_builds"], adapt(params))
            row = conn.execute(queries()["insert_build"], adapt(params)).fetchone()
            assert row is not None
            if requested_by != "berth":
                conn.execute(queries()["release_hold"], {"name": deployment})
            return BuildRecord.from_row(row)

        return self._in_transaction("enqueue_build", work)

    # --- the dispatcher and its jobs ----------------------------------------------------
    def claim_build(self, fence: Fence, limit: int) -> BuildRecord | None:
        """The next queued build, now `running` under this term, if fewer than `limit` run."""

        def work(conn: psycopg.Connection[Any]) -> BuildRecord | None:
            self._fence(conn, fence)
            conn.execute(queries()["lock_build_queue"], {"key": advisory_key(BUILD_QUEUE_LOCK)})
            params = {"term": fence.term, "node_id": fence.node_id, "limit": limit}
            row = conn.execute(queries()["claim_build"], params).fetchone()
            return BuildRecord.from_row(row) if row else None

        return self._in_transaction("claim_build", work)

    def build_heartbeat(
        self,
        fence: Fence,
        build_id: int,
        progress: dict[str, Any],
        logs: Sequence[tuple[int, float, str, str]],
    ) -> bool | None:
        """Write a batch of log lines and the build's progress; True when it was asked to
        cancel, None when this term no longer owns it."""

        def work(conn: psycopg.Connection[Any]) -> bool | None:
            self._fence(conn, fence)
            if logs:
                conn.execute(
                    queries()["insert_build_logs"],
                    {
                        "build_id": build_id,
                        "seqs": [seq for seq, _, _, _ in logs],
                        "ats": [at for _, at, _, _ in logs],
                        "streams": [stream for _, _, stream, _ in logs],
                        "lines": [line for _, _, _, line in logs],
                    },
                )
            params = {
                "id": build_id,
                "term": fence.term,
                "step": progress.get("step", ""),
                "progress": progress.get("progress", 0),
                "files": progress.get("files"),
                "revision": progress.get("revision"),
                "image": progress.get("image"),
            }
            row = conn.execute(queries()["build_heartbeat"], params).fetchone()
            return bool(row["cancel_requested"]) if row else None

        return self._in_transaction("build_heartbeat", work)

    def finish_build(self, fence: Fence, build_id: int, result: BuildResult) -> bool:
        """Record a build's end (fenced); False if this term did not own it any more."""
        params = {
            "id": build_id,
            "term": fence.term,
            "status": str(result.status),
            "retry_after_s": result.retry_after_s or 0.0,
            "exit_code": result.exit_code,
            "error": result.error,
            "image": result.image,
            "revision": result.revision,
            "cached": result.cached,
        }

        def work(conn: psycopg.Connection[Any]) -> bool:
            self._fence(conn, fence)
            return conn.execute(queries()["finish_build"], params).fetchone() is not None

        return self._in_transaction("finish_build", work)

    def orphan_builds(self, fence: Fence) -> list[BuildRecord]:
        rows = self._run("select_orphan_builds", {"term": fence.term})
        return [BuildRecord.from_row(row) for row in rows]

    def take_over_build(self, fence: Fence, build_id: int) -> bool:
        def work(conn: psycopg.Connection[Any]) -> bool:
            self._fence(conn, fence)
            params = {"id": build_id, "term": fence.term}
            return conn.execute(queries()["take_over_build"], params).fetchone() is not None

        return self._in_transaction("take_over_build", work)

    # --- the CLI ---------------------------------------------------------------------------
    def builds(
        self, deployment: str | None = None, dead_only: bool = False, limit: int = 50
    ) -> list[dict[str, Any]]:
        params = {"deployment": deployment, "dead_only": dead_only, "limit": limit}
        return self._run("select_builds", params)

    def latest_build(self, deployment: str) -> BuildRecord | None:
        rows = self._run("select_latest_build", {"deployment": deployment})
        return BuildRecord.from_row(rows[0]) if rows else None

    def build_status(self, build_id: int) -> str | None:
        rows = self._run("select_build_state", {"id": build_id})
        return str(rows[0]["status"]) if rows else None

    def build_logs(self, build_id: int, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        return self._run(
            "select_build_logs", {"build_id": build_id, "after": after, "limit": limit}
        )

    def cancel_builds(self, deployment: str) -> list[dict[str, Any]]:
        return self._run("cancel_builds", {"deployment": deployment})

    # --- uploaded archives -----------------------------------------------------------------
    def store_archive(
        self, stream: BinaryIO, filename: str, max_bytes: int
    ) -> tuple[str, int, bool]:
        """Stream an archive into a large object, chunk by chunk; (sha256, size, new)."""

        def work(conn: psycopg.Connection[Any]) -> tuple[str, int, bool]:
            if stream.seekable():
                stream.seek(0)  # a retried transaction reads the file again from the start
            row = conn.execute(queries()["create_large_object"]).fetchone()
            assert row is not None
            object_id = row["object_id"]
            digest, size = hashlib.sha256(), 0
            for chunk in iter(lambda: stream.read(ARCHIVE_CHUNK), b""):
                size += len(chunk)
                if size > max_bytes:
                    raise SourceInvalid(
                        f"archive: larger than {max_bytes} bytes (BERTH_ARCHIVE_MAX_BYTES)"
                    )
                digest.update(chunk)
                params = {"object_id": object_id, "offset": size - len(chunk), "data": chunk}
                conn.execute(queries()["write_large_object"], params)
            sha256 = digest.hexdigest()
            params = {
                "sha256": sha256,
                "size_bytes": size,
                "object_id": object_id,
                "filename": filename,
            }
            if conn.execute(queries()["insert_archive"], params).fetchone() is None:
                conn.execute(queries()["unlink_large_object"], {"object_id": object_id})
                return sha256, size, False
            return sha256, size, True

        return self._in_transaction("store_archive", work)

    def read_archive(self, sha256: str, target: BinaryIO) -> None:
        """Write the uploaded archive `sha256` to `target` (SourceInvalid if never uploaded)."""
        rows = self._run("select_archive", {"sha256": sha256})
        if not rows:
            raise SourceInvalid(
                f"source.archive.sha256: no archive {sha256[:12]}… was uploaded "
                "(`berth upload FILE`)"
            )
        object_id, size = rows[0]["object_id"], rows[0]["size_bytes"]
        for offset in range(0, size, ARCHIVE_CHUNK):
            params = {"object_id": object_id, "offset": offset, "length": ARCHIVE_CHUNK}
            data = self._run("read_large_object", params)[0]["data"]
            target.write(bytes(data))
