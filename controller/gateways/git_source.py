"""The git gateway: resolve a ref to a commit, and fetch exactly that commit.

Used by the build job (`controller.loop.build_job`). Only this module runs `git`. A remote
that cannot be reached is `SourceUnavailable` (transient: retried, then dead-lettered); a
ref that does not exist is `SourceInvalid` (permanent). Credentials in URLs never reach a
message or a log line (`redact_url`). Git never prompts (GIT_TERMINAL_PROMPT=0).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path

from controller.gateways.commands import CommandResult, run_command
from controller.model.errors import BuildCancelled, SourceInvalid, SourceUnavailable
from controller.model.source import COMMIT_PATTERN, redact_url

GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "true",
    "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
    "LC_ALL": "C",
}
_COMMIT = re.compile(COMMIT_PATTERN)
_FULL_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# Output that means the remote was reached and answered "no such thing" (permanent).
_NOT_FOUND = ("not found", "does not appear to be a git repository", "couldn't find remote ref")

OnLine = Callable[[str, str], None]


class GitGateway:
    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    def _git(
        self, args: list[str], on_line: OnLine, cancelled: threading.Event, cwd: Path | None = None
    ) -> CommandResult:
        result = run_command(["git", *args], on_line, cancelled, self.timeout_s, cwd, GIT_ENV)
        if result.cancelled:
            raise BuildCancelled("cancelled while running git")
        if result.timed_out:
            raise SourceUnavailable(f"git {args[0]} took longer than {self.timeout_s:g}s")
        return result

    def resolve(
        self, url: str, ref: str | None, on_line: OnLine, cancelled: threading.Event
    ) -> str:
        """The commit `ref` names at `url` now (None: the remote's HEAD)."""
        if ref is not None and _FULL_COMMIT.match(ref):
            return ref  # nothing to resolve; checked when fetched
        shown = redact_url(url)
        lines: list[str] = []

        def keep(stream: str, line: str) -> None:
            if stream == "stdout":
                lines.append(line)
            else:
                on_line(stream, line)

        wanted = ref or "HEAD"
        result = self._git(["ls-remote", "--", url, wanted], keep, cancelled)
        if result.exit_code != 0:
            self._fail("ls-remote", shown, result)
        for line in lines:
            commit, _, name = line.partition("\t")
            if name in (wanted, f"refs/heads/{wanted}", f"refs/tags/{wanted}^{{}}"):
                return commit
        for line in lines:
            commit, _, name = line.partition("\t")
            if name in (f"refs/tags/{wanted}", f"refs/{wanted}"):
                return commit
        if ref is not None and _COMMIT.match(ref):
            return ref  # a commit: checked when fetched
        raise SourceInvalid(f"source.git.ref: {wanted!r} not found in {shown}")

    def checkout(
        self,
        url: str,
        ref: str | None,
        commit: str,
        directory: Path,
        on_line: OnLine,
        cancelled: threading.Event,
    ) -> str:
        """Fetch `commit` of `url` into `directory` (which must not exist) and check it out;
        returns the commit checked out. A branch or tag is cloned shallow in one `git clone`
        (the branch may have moved since `resolve`: the commit cloned is returned); a commit
        is fetched by id, or with the whole history where a server refuses that."""
        shown = redact_url(url)
        quiet = ["-c", "advice.detachedHead=false"]
        if ref is not None and not _COMMIT.match(ref):
            args = [*quiet, "clone", "-q", "--depth", "1", "--no-tags", "--branch", ref]
            result = self._git([*args, "--", url, str(directory)], on_line, cancelled)
            if result.exit_code != 0:
                self._fail("clone", shown, result)
            return self._head(directory, on_line, cancelled) or commit
        self._git(["init", "-q", str(directory)], on_line, cancelled)
        fetch = ["fetch", "-q", "--no-tags", "--depth", "1", "--", url, commit]
        if self._git(fetch, on_line, cancelled, directory).exit_code != 0:
            # A server may refuse a bare commit as a shallow want: fetch everything instead.
            everything = ["fetch", "-q", "--no-tags", "--", url, "+refs/*:refs/remotes/source/*"]
            result = self._git(everything, on_line, cancelled, directory)
            if result.exit_code != 0:
                self._fail("fetch", shown, result)
        checkout = [*quiet, "checkout", "-q", "--detach", commit]
        if self._git(checkout, on_line, cancelled, directory).exit_code != 0:
            raise SourceInvalid(f"source.git.ref: commit {commit[:12]} not found in {shown}")
        return self._head(directory, on_line, cancelled) or commit

    def _head(self, directory: Path, on_line: OnLine, cancelled: threading.Event) -> str | None:
        head: list[str] = []

        def keep(stream: str, line: str) -> None:
            if stream == "stdout":
                head.append(line)
            else:
                on_line(stream, line)

        self._git(["rev-parse", "HEAD"], keep, cancelled, directory)
        return head[0] if head else None

    @staticmethod
    def _fail(step: str, shown: str, result: CommandResult) -> None:
        detail = "; ".join(line for line in result.tail[-3:] if line.strip())
        if any(marker in detail.lower() for marker in _NOT_FOUND) and "unable to" not in detail:
            raise SourceInvalid(f"source.git.url: git {step} of {shown} failed: {detail}")
        raise SourceUnavailable(f"git {step} of {shown} failed (exit {result.exit_code}): {detail}")
