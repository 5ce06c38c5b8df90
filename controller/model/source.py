"""Where a source deployment's code comes from, and the keys that make builds cacheable.

Pure: no I/O. Parsed from `deployments.source` by the spec (`controller.model.spec`);
read by the source stage of a pass (`controller.loop.sources`), which keys builds by
`source_key`, and by the build job (`controller.loop.build_job`), which names the image by
`build_key` once the revision is known. The database checks the same shapes
(`berth_check_source` in sql/migrations/0007_builds.sql), naming the field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

HEX64 = r"^[0-9a-f]{64}$"
REF_PATTERN = r"^[A-Za-z0-9._/][A-Za-z0-9._/-]*$"
COMMIT_PATTERN = r"^[0-9a-f]{7,40}$"


def _relative(value: str) -> str:
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts:
        raise ValueError('must be a relative path inside the source (no leading "/", no "..")')
    return value


class GitSource(BaseModel):
    """A git repository: `url` anything `git clone` accepts; `ref` a branch, tag or commit
    (None: the remote's HEAD)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(min_length=1, pattern=r"^[^-\s]\S*$")
    ref: str | None = Field(default=None, pattern=REF_PATTERN)


class ArchiveSource(BaseModel):
    """A tar or tar.gz: uploaded beforehand (`sha256`), or a file on the host (`path`),
    optionally pinned to the `sha256` its content must have."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str | None = Field(default=None, pattern=HEX64)
    path: str | None = None

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and (
            not PurePosixPath(value).is_absolute() or ".." in PurePosixPath(value).parts
        ):
            raise ValueError('must be an absolute path without ".."')
        return value

    @model_validator(mode="after")
    def _one_of(self) -> ArchiveSource:
        if self.sha256 is None and self.path is None:
            raise ValueError('set "sha256" (uploaded), "path" (on the host), or both (pinned)')
        return self


class SourceSpec(BaseModel):
    """`deployments.source`: exactly one of `git` and `archive`, plus the build inputs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    git: GitSource | None = None
    archive: ArchiveSource | None = None
    dockerfile: str = "Dockerfile"
    context: str = "."

    @field_validator("dockerfile", "context")
    @classmethod
    def _inside(cls, value: str) -> str:
        return _relative(value)

    @model_validator(mode="after")
    def _one_of(self) -> SourceSpec:
        if (self.git is None) == (self.archive is None):
            raise ValueError('must have exactly one of "git" and "archive"')
        return self

    @property
    def kind(self) -> str:
        return "git" if self.git is not None else "archive"

    def describe(self) -> str:
        """For messages and logs: never the archive's bytes, never credentials in a URL."""
        if self.git is not None:
            return f"git {redact_url(self.git.url)}@{self.git.ref or 'HEAD'}"
        assert self.archive is not None
        if self.archive.path is None:
            return f"archive sha256:{(self.archive.sha256 or '')[:12]}"
        return f"archive {self.archive.path}"

    def known_revision(self) -> str | None:
        """The revision when the spec fixes it without fetching: an uploaded archive's
        sha256 (a git commit is resolved against the remote, a path's file may change)."""
        if self.archive is not None and self.archive.sha256 is not None:
            return self.archive.sha256
        return None


def redact_url(url: str) -> str:
    """`https://user:secret@host/x` -> `https://***@host/x`: credentials never leave."""
    scheme, separator, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if separator and "@" in authority:  # the last @ ends the credentials (`p@ss` included)
        return f"{scheme}://***@{authority.rsplit('@', 1)[1]}{slash}{path}"
    return url


def _digest(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def source_key(source: SourceSpec) -> str:
    """Identifies what the operator asked for (not yet resolved): a build row answers one
    source key; a row change that keeps it keeps the build (scaling rebuilds nothing)."""
    return _digest(source.model_dump(mode="json"))


def build_key(revision: str, source: SourceSpec) -> str:
    """Identifies what is built: the revision plus the build inputs. The image tag carries
    it, so a revision already built (a second deploy, a rollback, a crash) is reused."""
    inputs = {"revision": revision, "dockerfile": source.dockerfile, "context": source.context}
    return _digest(inputs)
