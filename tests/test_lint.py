"""The house style is part of the test run (so CI checks it): ruff's lint rules and its formatter, as
configured in pyproject.toml, over the whole tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ruff() -> str:
    executable = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if executable is None:
        pytest.skip("ruff is not installed beside this Python (pip install -e '.[dev]')")
    return executable


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_is_clean(command):
    done = subprocess.run([_ruff(), *command, str(ROOT)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
