"""Layering rules that keep the engine usable from scripts and the CLI."""

from __future__ import annotations

import subprocess
import sys


def test_engine_imports_no_qt_and_no_gui():
    code = (
        "import sys, engine, engine.cli, engine.bench, engine.evaluation, engine.synthetic, captum.attr\n"
        "engine.evaluation._plot({}, 'deletion')  # matplotlib, through its Agg canvas only\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'gui'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"engine pulled in: {done.stdout} {done.stderr}"


def test_gui_package_is_importable():
    import gui

    assert gui.__doc__


def test_the_app_can_show_a_window_before_torch_is_imported():
    """gui.app (splash, logging, settings) and the light engine modules must not pull torch in."""
    code = "import sys, gui.app, engine, engine.resources, engine.errors\nprint('torch' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stdout + done.stderr
