"""Packaging: the systemd units in deploy/ pass `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DEPLOY = Path(__file__).parents[2] / "deploy"
INSTALLED_VENV = "/opt/berth/.venv"  # where deploy/berth.service expects Berth


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("unit", sorted(p.name for p in DEPLOY.glob("*.service")))
def test_systemd_units_verify(unit: str, tmp_path: Path) -> None:
    """Verified as installed: the unit's virtualenv path points at this checkout's, which
    exists here (systemd checks that every ExecStart is executable)."""
    text = (DEPLOY / unit).read_text()
    here = str(Path(sys.executable).parent.parent)
    (tmp_path / unit).write_text(text.replace(INSTALLED_VENV, here))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
