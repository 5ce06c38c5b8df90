"""The import contracts can fail: each deliberate violation breaks `lint-imports`.

`.ci/run` runs `lint-imports` on the real tree; these tests prove each contract would catch
a violation, on a copy of the package with one deliberate import added.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("tree")
    for name in ("controller", "tests"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    assert _lint(copy).returncode == 0, "the copy keeps every contract"
    return copy


@pytest.mark.parametrize(
    ("module", "added", "contract", "chain"),
    [
        (
            "controller/policy/backoff.py",
            "import docker",
            "import the drivers",
            "controller.policy.backoff -> docker",
        ),
        (
            "controller/loop/workqueue.py",
            "import controller.gateways.retry",
            "it imports no gateway",
            "controller.loop.workqueue -> controller.gateways.retry",
        ),
        (
            "controller/model/phases.py",
            "import controller.model.records",
            "No import cycle",
            "No cycles are allowed in controller.model",
        ),
        (
            "controller/app/api_builds.py",
            "import controller.app.api_deployments",
            "independent of each other",
            "controller.app.api_builds -> controller.app.api_deployments",
        ),
    ],
)
def test_a_violation_breaks_its_contract(
    tree: Path, module: str, added: str, contract: str, chain: str
) -> None:
    path = tree / module
    original = path.read_text()
    path.write_text(original + f"\n{added}  # noqa\n")
    try:
        result = _lint(tree)
    finally:
        path.write_text(original)
    assert result.returncode != 0
    broken = result.stdout[result.stdout.index("BROKEN") :] if "BROKEN" in result.stdout else ""
    assert contract in result.stdout and "BROKEN" in result.stdout, result.stdout[-2000:]
    assert chain in broken or chain.replace(" -> ", " ->\n") in broken, result.stdout[-3000:]


def test_no_module_is_over_400_lines() -> None:
    """Small modules, each with one role (the house style): the longest stay readable."""
    long = {
        str(path.relative_to(ROOT)): count
        for path in (ROOT / "controller").rglob("*.py")
        if (count := len(path.read_text().splitlines())) > 400
    }
    assert not long, long
