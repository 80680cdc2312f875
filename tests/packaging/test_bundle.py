"""Build the PyInstaller bundle and smoke-test it (opt-in: ``pytest -m packaging``; minutes, ~5 GB)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging
ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "build_scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_and_smoke_test_the_bundle(tmp_path):
    dist = tmp_path / "dist"
    build_py = ROOT / "build_scripts" / "build.py"
    command = [sys.executable, str(build_py), "--dist", str(dist), "--work", str(tmp_path / "work"), "--no-archive"]
    build = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    executable = dist / "fgvis-studio" / ("fgvis-studio.exe" if sys.platform == "win32" else "fgvis-studio")
    figures = _load("smoke_test").smoke_test(executable)
    assert figures["target_label"] == "espresso"
    if sys.platform.startswith("linux"):
        desktop = (dist / "fgvis-studio" / "fgvis-studio.desktop").read_text()
        assert "Exec=fgvis-studio" in desktop and (dist / "fgvis-studio" / "fgvis-studio.png").is_file()
