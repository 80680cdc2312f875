"""Run the built app the way a user's machine would: ``python build_scripts/smoke_test.py [EXECUTABLE]``.

The executable (default ``dist/fgvis-studio/fgvis-studio``) runs from an empty folder with a minimal
environment (``env -i`` plus PATH, HOME, LANG, QT_QPA_PLATFORM=offscreen and FGVIS_STUDIO_HOME), so no
source tree or virtual environment can help it. Checks ``--version``, then ``--self-test OUTDIR``: exit
code 0, no ImportError/ModuleNotFoundError in the log, a window screenshot and a self_test.json with a
sensible target probability. Prints the cold-start time (launch to main window shown). Exit 0 = passed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "dist" / "fgvis-studio" / ("fgvis-studio.exe" if sys.platform == "win32" else "fgvis-studio")


def smoke_test(executable: Path, timeout_s: float = 600.0) -> dict:
    """Returns the figures; raises ``AssertionError`` with the reason when the bundle is broken."""
    executable = Path(executable).resolve()
    assert executable.is_file(), f"no executable at {executable}: build it first (python build_scripts/build.py)"
    with tempfile.TemporaryDirectory(prefix="fgvis-smoke-") as scratch:
        scratch = Path(scratch)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(scratch),
            "LANG": "C.UTF-8",
            "QT_QPA_PLATFORM": "offscreen",
            "FGVIS_STUDIO_HOME": str(scratch / "home"),
        }
        version = subprocess.run(
            [str(executable), "--version"], cwd=scratch, env=env, capture_output=True, text=True, timeout=120
        )
        assert version.returncode == 0, f"--version exited {version.returncode}: {version.stderr[-2000:]}"
        assert version.stdout.startswith("fgvis-studio "), f"--version printed {version.stdout!r}"
        out = scratch / "out"
        launched = time.time()
        run = subprocess.run(
            [str(executable), "--self-test", str(out)],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        total = time.time() - launched
        log_file = scratch / "home" / "logs" / "fgvis-studio.log"
        log = log_file.read_text(encoding="utf-8", errors="replace") if log_file.is_file() else ""
        output = run.stdout + run.stderr + log
        for marker in ("ImportError", "ModuleNotFoundError", "does not exist"):
            assert marker not in output, f"{marker} in the output:\n{output[-3000:]}"
        assert run.returncode == 0, f"--self-test exited {run.returncode}:\n{output[-3000:]}"
        summary = json.loads((out / "self_test.json").read_text(encoding="utf-8"))
        assert summary["ok"], summary
        assert (out / "window.png").stat().st_size > 10_000, "the screenshot is (nearly) empty"
        assert 0.5 < summary["prob_original"] <= 1.0, f"implausible probability {summary['prob_original']}"
        return {
            "version": version.stdout.strip(),
            "cold_start_to_window_s": round(summary["window_shown_at"] - launched, 2),
            "splash_after_s": round(summary["splash_shown_s"] + (summary["started_at"] - launched), 2),
            "self_test_total_s": round(total, 1),
            "target_label": summary["target_label"],
            "prob_original": summary["prob_original"],
            "prob_explanation": summary["prob_explanation"],
            "event_loop_max_stall_ms": summary["event_loop_max_stall_ms"],
        }


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    executable = Path(args[0]) if args else DEFAULT
    try:
        figures = smoke_test(executable)
    except (AssertionError, subprocess.TimeoutExpired, OSError, ValueError, KeyError) as exc:
        print(f"SMOKE TEST FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
