"""The engine's types are part of the test run (so CI checks them): mypy over engine/, as configured in
pyproject.toml ([tool.mypy]). From a fresh clone it takes about 45 s on 2 cores (torch's stubs are large);
with mypy's cache (.mypy_cache) a few seconds."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _mypy() -> str:
    executable = shutil.which("mypy", path=str(Path(sys.executable).parent))
    if executable is None:
        pytest.skip("mypy is not installed beside this Python (pip install -e '.[dev]')")
    return executable


def test_mypy_is_clean():
    done = subprocess.run([_mypy()], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
