"""Sources: the model's validation (the database says the same), the cache keys, and safe
unpacking of archives (real tar files in a temporary directory)."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest

from controller.gateways.postgres_sql import migrations
from controller.gateways.workspace import allowed_archive, unpack
from controller.model.builds import BuildStatus
from controller.model.errors import InvalidSpec, SourceInvalid
from controller.model.source import SourceSpec, build_key, redact_url, source_key
from controller.model.spec import parse_spec

GIT = {"git": {"url": "file:///src", "ref": "main"}}


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"name": "a"}, "image: is required unless source is set"),
        ({"name": "a", "image": "x", "source": GIT}, "source: set exactly one of image and source"),
        ({"name": "a", "source": {}}, 'must have exactly one of "git" and "archive"'),
        ({"name": "a", "source": {**GIT, "context": "../up"}}, "source.context"),
        ({"name": "a", "source": {"archive": {"sha256": "abc"}}}, "source.archive.sha256"),
        ({"name": "a", "source": {"archive": {"path": "rel.tar"}}}, "source.archive.path"),
        ({"name": "a", "source": {"archive": {}}}, 'set "sha256" (uploaded), "path"'),
        ({"name": "a", "source": {"git": {"url": "-oProxyCommand=x"}}}, "source.git.url"),
        ({"name": "a", "source": GIT, "priority": 5000}, "priority"),
    ],
)
def test_bad_specs_name_the_field(data: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidSpec, match=re.escape(problem)):
        parse_spec(data)


def test_keys_are_stable_and_separate_what_matters() -> None:
    spec = SourceSpec.model_validate(GIT)
    assert source_key(spec) == source_key(SourceSpec.model_validate({**GIT, "context": "."}))
    assert source_key(spec) != source_key(SourceSpec.model_validate({**GIT, "context": "app"}))
    assert build_key("c1", spec) != build_key("c2", spec)
    # the priority and the image never change a source deployment's containers
    a = parse_spec({"name": "a", "source": GIT, "priority": 1}).with_image("i:1")
    b = parse_spec({"name": "a", "source": GIT, "priority": 9}).with_image("i:1")
    assert a.spec_hash == b.spec_hash


def test_redact_url() -> None:
    assert redact_url("https://user:secret@host/r.git") == "https://***@host/r.git"
    assert redact_url("/srv/git/app") == "/srv/git/app"


def test_build_statuses_match_the_sql_check() -> None:
    sql = "\n".join(text for _, _, text in migrations())
    match = re.search(r"builds_status_known CHECK \(status IN \((.*?)\)\)", sql, re.S)
    assert match is not None
    assert set(re.findall(r"'(\w+)'", match.group(1))) == {str(s) for s in BuildStatus}


def _tar(path: Path, members: list[tarfile.TarInfo]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return path


def _file(name: str, size: int = 1) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def _link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        (_file("../escape"), "would be written outside the workspace"),
        (_file("/etc/cron.d/x"), "would be written outside the workspace"),
        (_link("up", "../../etc"), "points outside the workspace"),
        (_link("abs", "/etc/passwd"), "points outside the workspace"),
        (_file("huge", 2000), "unpacks to more than 1000 bytes"),
    ],
)
def test_unsafe_archives_are_refused_and_nothing_is_written(
    tmp_path: Path, member: tarfile.TarInfo, problem: str
) -> None:
    archive = _tar(tmp_path / "a.tar.gz", [_file("Dockerfile"), member])
    target = tmp_path / "out"
    with pytest.raises(SourceInvalid, match=re.escape(problem)):
        unpack(archive, target, max_bytes=1000)
    assert not target.exists()


def test_a_safe_archive_unpacks(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "a.tar.gz", [_file("Dockerfile"), _file("src/app.py"), _link("l", "src/app.py")]
    )
    assert unpack(archive, tmp_path / "out", max_bytes=1000) == 2
    assert (tmp_path / "out" / "src" / "app.py").is_file()


def test_archive_paths_must_lie_in_allowed_directories(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "a.tar").write_bytes(b"")
    (tmp_path / "outside.tar").write_bytes(b"")
    (allowed / "sneaky.tar").symlink_to(tmp_path / "outside.tar")
    assert allowed_archive(str(allowed / "a.tar"), [allowed]) == (allowed / "a.tar").resolve()
    for path in (tmp_path / "outside.tar", allowed / "sneaky.tar"):
        with pytest.raises(SourceInvalid, match="outside the allowed directories"):
            allowed_archive(str(path), [allowed])
    with pytest.raises(SourceInvalid, match="host archive paths are disabled"):
        allowed_archive(str(allowed / "a.tar"), [])
