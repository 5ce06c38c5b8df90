"""The import contracts can fail: a driver imported by the policy layer breaks `lint-imports`.

`.ci/run` runs `lint-imports` on the real tree; this test proves the contracts would catch
a violation, on a copy of the package with one deliberate `import docker` in a policy module.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

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


def test_a_driver_import_in_policy_breaks_the_contracts(tmp_path: Path) -> None:
    for name in ("controller", "tests"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    assert _lint(tmp_path).returncode == 0, "the copy keeps every contract"

    backoff = tmp_path / "controller" / "policy" / "backoff.py"
    backoff.write_text(backoff.read_text() + "\nimport docker  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "controller.policy.backoff -> docker" in result.stdout
    assert "Decisions are pure" in result.stdout or "import the drivers" in result.stdout
