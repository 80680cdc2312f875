"""The real entry points: ``python -m gui --version`` and ``--self-test`` on the built-in model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from PySide6.QtGui import QImage


def _run(args, tmp_path, timeout=600):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "FGVIS_STUDIO_HOME": str(tmp_path / "home")}
    return subprocess.run(
        [sys.executable, "-m", "gui", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def test_version(tmp_path):
    import gui

    done = _run(["--version"], tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"fgvis-studio {gui.__version__}"


def test_self_test_runs_the_real_window_worker_and_model(tmp_path):
    out = tmp_path / "out"
    done = _run(["--self-test", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "self_test.json").read_text())
    assert summary["ok"] and summary["target_label"] == "espresso" and summary["steps"] >= 1
    assert 0.9 < summary["prob_original"] < 1.0 and summary["prob_explanation"] > 0.5
    assert summary["event_loop_max_stall_ms"] >= 0
    screenshot = QImage(str(out / "window.png"))
    assert screenshot.width() >= 800 and screenshot.height() >= 600
    assert (tmp_path / "home" / "logs" / "fgvis-studio.log").read_text().count("starting") == 1


def test_self_test_reports_failure_with_exit_code(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should be")
    done = _run(["--self-test", str(blocker / "out")], tmp_path)
    assert done.returncode == 1 and "self-test FAILED" in done.stderr
