"""Regenerate the README screenshots from the real window on the built-in model (offscreen), and
measure the GUI thread's longest stall during a run and while a 12 MP photo is opened mid-run:

    QT_QPA_PLATFORM=offscreen python build_scripts/screenshots.py docs/screenshots

Writes ``running.png`` (mid-run, live preview), ``result.png`` (finished result, layer panel) and prints
the job's figures and the event loop's longest stall."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("FGVIS_STUDIO_HOME", tempfile.mkdtemp(prefix="fgvis-shots-"))

from PySide6.QtWidgets import QApplication

import engine
from gui.app import _wait
from gui.main_window import MainWindow
from gui.settings import log_path, open_settings


def main(outdir: Path) -> int:
    outdir.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication([])
    window = MainWindow(open_settings(), log_file=log_path())
    window.resize(1400, 900)
    window.show()
    photo = next(p for p in engine.sample_images() if p.stem == "chelsea")
    window.open_paths([photo])
    assert _wait(lambda: window.current and window.model_info and window.current.predictions)
    results = []
    window.result_added.connect(results.append)
    window.run_jobs()
    assert _wait(lambda: window.last_progress is not None and window.last_progress.step >= 60)
    stall_before_grab = window.stall_monitor.max_stall_ms
    window.grab().save(str(outdir / "running.png"))  # itself blocks the event loop: excluded below
    window.stall_monitor.reset()
    big = _large_photo()
    window.open_paths([big])
    assert _wait(lambda: window.current.path == big and window.current.predictions)
    stall_opening_large = window.stall_monitor.max_stall_ms
    window.stall_monitor.reset()
    window.image_list.setCurrentRow(0)
    assert _wait(lambda: bool(results))
    result = results[0]
    window.layer_panel.select("Evidence")
    app.processEvents()
    window.grab().save(str(outdir / "result.png"))
    print(
        f"{photo.name}: {result.job.target_label} p(x) {result.prob_original:.3f} -> p(e) "
        f"{result.prob_explanation:.3f}, mask mean {result.mask_mean:.3f}, {result.steps} steps, "
        f"{result.wall_time_s:.1f} s; event loop longest stall "
        f"{max(stall_before_grab, window.stall_monitor.max_stall_ms):.1f} ms (screenshot excluded); "
        f"opening a 12 MP photo during the run: {stall_opening_large:.1f} ms"
    )
    window.close()
    return 0


def _large_photo() -> Path:
    """A 4000x3000 (12 MP) JPEG, the size of a phone photo."""
    import numpy as np
    from PIL import Image

    path = Path(os.environ["FGVIS_STUDIO_HOME"]) / "large.jpg"
    y, x = np.mgrid[0:3000, 0:4000]
    pixels = np.stack([x % 256, y % 256, (x + y) % 256], axis=2).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")))
