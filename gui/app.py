"""Start-up: the QApplication, logging to a file, an exception hook that shows a dialog instead of
dying, the command line (``fgvis-studio [IMAGE...] [--self-test OUTDIR] [--version]``) and the self-test
that packaging reuses."""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__
from .settings import APP_NAME, log_path, open_settings

log = logging.getLogger(__name__)

#: When this module was imported: before Qt and long before torch (startup times are measured from here).
STARTED = time.perf_counter()
STARTED_EPOCH = time.time()
SELF_TEST_STEPS = 20
SELF_TEST_TIMEOUT_S = 600.0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        print(f"fgvis-studio {__version__}")
        return 0
    log_file = _setup_logging()
    if getattr(sys, "frozen", False):
        _redirect_output(log_file)
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    icon = _app_icon()
    if icon is not None:
        app.setWindowIcon(icon)
    splash = _show_splash(app)
    startup = {"splash_shown_s": time.perf_counter() - STARTED}
    from engine.core import threads  # before torch: idle OpenMP threads spin briefly, then sleep (engine.core.threads)
    from engine.errors import ConfigError

    from .main_window import MainWindow  # imports torch: the slow part of starting, behind the splash

    try:
        threads.configure()  # $FGVIS_THREADS, else the cores this process may use
    except ConfigError as exc:
        logging.getLogger(__name__).warning("%s: using torch's default", exc)
    window = MainWindow(open_settings(args.settings), log_file=log_file)
    sys.excepthook = _exception_hook(window, log_file)
    window.show()
    splash.finish(window)
    startup.update(window_shown_s=time.perf_counter() - STARTED, window_shown_at=time.time(), started_at=STARTED_EPOCH)
    window.startup_times = startup
    log.info("splash after %.2f s, main window after %.2f s", startup["splash_shown_s"], startup["window_shown_s"])
    if args.self_test:
        return run_self_test(window, args.self_test)
    if args.images:
        window.open_paths(args.images)
    window.sessions.offer_recovery()
    return app.exec()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fgvis-studio", description="FGVis Studio desktop application.")
    parser.add_argument("images", nargs="*", type=Path, metavar="IMAGE", help="images to open")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--settings", type=Path, help="settings INI file to use instead of the user's")
    parser.add_argument(
        "--self-test",
        type=Path,
        metavar="OUTDIR",
        help="open a sample photo, run a short job on the built-in model, save window.png and self_test.json",
    )
    return parser


def _app_icon():
    from PySide6.QtGui import QIcon

    from engine.models.resources import resource_path

    path = resource_path("icons", "fgvis-studio.png")
    return QIcon(str(path)) if path.is_file() else None


def _show_splash(app):
    """A window on screen within a second of launch, while torch and the model load."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor, QFont, QPainter, QPixmap
    from PySide6.QtWidgets import QSplashScreen

    pixmap = QPixmap(460, 200)
    pixmap.fill(QColor(28, 30, 40))
    painter = QPainter(pixmap)
    icon = app.windowIcon()
    if not icon.isNull():
        painter.drawPixmap(24, 36, icon.pixmap(128, 128))
    painter.setPen(QColor(240, 240, 240))
    painter.setFont(QFont(painter.font().family(), 20, QFont.Weight.Bold))
    painter.drawText(170, 90, APP_NAME)
    painter.setFont(QFont(painter.font().family(), 10))
    painter.drawText(170, 120, f"version {__version__}")
    painter.drawText(170, 150, "Loading PyTorch and the model…")
    painter.end()
    splash = QSplashScreen(pixmap, Qt.WindowType.WindowStaysOnTopHint)
    splash.show()
    app.processEvents()
    return splash


def _setup_logging() -> Path:
    path = log_path()
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=2_000_000, backupCount=2, encoding="utf-8"
        )
    except OSError as exc:
        print(f"fgvis-studio: cannot write the log file {path} ({exc}); logging to stderr", file=sys.stderr)
        handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    root.addHandler(handler)
    log.info("FGVis Studio %s starting", __version__)
    return path


def _redirect_output(log_file: Path) -> None:
    """A packaged app has no terminal to print to (on Windows none at all): stdout and stderr go to the log."""
    try:
        stream = open(log_file, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 -- open for the app's lifetime
    except OSError:
        return
    sys.stdout = sys.stderr = stream


def _exception_hook(window, log_file: Path) -> Callable:
    def hook(kind, value, trace) -> None:
        details = "".join(traceback.format_exception(kind, value, trace))
        log.error("unhandled exception\n%s", details)
        if issubclass(kind, KeyboardInterrupt):
            window.close()
            return
        window.show_error("Unexpected error", f"{kind.__name__}: {value}\n\nThe app keeps running.")

    return hook


def run_self_test(window, outdir: Path, steps: int = SELF_TEST_STEPS) -> int:
    """Drive the real window: open the coffee sample, run a short preservation job through the worker
    thread, save ``window.png`` and ``self_test.json`` in ``outdir``. Returns the exit code."""
    from PySide6.QtWidgets import QApplication

    import engine

    started = time.perf_counter()
    outdir = Path(outdir)
    summary: dict = {"ok": False, "version": __version__}
    failures: list[str] = []
    window.error_shown.connect(lambda title, message: failures.append(f"{title}: {message}"))
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        samples = {p.stem: p for p in engine.sample_images()}
        sample = samples.get("coffee") or next(iter(samples.values()))
        window.resize(1400, 900)
        window.open_paths([sample])
        if not wait_until(
            lambda: (
                failures
                or (window.workspace.current and window.workspace.model_info and window.workspace.current.predictions)
            )
        ):
            raise RuntimeError("the image or the model did not load in time")
        _raise_on(failures)
        window.method.reset()
        window.method.steps.setValue(steps)
        window.method.game.setCurrentText("preserve")
        results: list = []
        window.workspace.result_added.connect(results.append)
        jobs = window.run_jobs()
        if not jobs:
            raise RuntimeError("the job could not be queued")
        if not wait_until(lambda: failures or results):
            raise RuntimeError("the job did not finish in time")
        _raise_on(failures)
        result = results[0]
        QApplication.processEvents()
        screenshot = outdir / "window.png"
        if not window.grab().save(str(screenshot)):
            raise RuntimeError(f"could not write {screenshot}")
        summary.update(
            ok=True,
            image=str(sample),
            model=window.workspace.model_info.name,
            device=result.device,
            target=result.target,
            target_label=result.target_label,
            prob_original=result.prob_original,
            prob_explanation=result.prob_explanation,
            top1_explanation=result.top1_explanation_label,
            mask_mean=result.mask_mean,
            steps=result.steps,
            job_time_s=result.wall_time_s,
            elapsed_s=time.perf_counter() - started,
            event_loop_max_stall_ms=window.queue.stall_monitor.max_stall_ms,
            **getattr(window, "startup_times", {}),
            screenshot=str(screenshot),
        )
    except Exception as exc:  # the self-test reports every failure as a message and an exit code
        log.exception("self-test failed")
        summary["error"] = str(exc)
    finally:
        try:
            (outdir / "self_test.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        except OSError as exc:
            summary.setdefault("error", f"cannot write {outdir / 'self_test.json'}: {exc}")
        window.close()
    if not summary["ok"]:
        print(f"fgvis-studio self-test FAILED: {summary.get('error')}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


def wait_until(condition: Callable[[], object], timeout_s: float = SELF_TEST_TIMEOUT_S) -> bool:
    """Run the event loop until ``condition()`` is true, checking it every 50 ms.

    A real ``QEventLoop.exec()`` sleeps between events; spinning ``processEvents()`` instead would hold
    the GIL and slow the worker thread's optimisation down about five times (measured)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    deadline = time.monotonic() + timeout_s
    poll = QTimer()
    poll.setInterval(50)
    poll.timeout.connect(lambda: loop.quit() if condition() or time.monotonic() > deadline else None)
    poll.start()
    if not condition():
        loop.exec()
    poll.stop()
    return bool(condition())


def _raise_on(failures: list[str]) -> None:
    if failures:
        raise RuntimeError("; ".join(failures))
