"""A whole review session, scripted, on the real window with the built-in model and few steps: open a
sample and an outside photo, run both games, cancel, re-run, compare, explain another class, export,
report, save and reopen the session, batch with a corrupt file, load a bad model, resize, and close during
a job. It fails on any error dialog that was not expected, a job that never ends, or an error in the log."""

from __future__ import annotations

import logging
import shutil

import numpy as np
from PIL import Image
from PySide6.QtWidgets import QApplication

import engine
from gui.records import ModelSpec

STEPS = 3
LONG = 10_000


def _wait_results(window, qtbot, count, timeout=120_000):
    try:
        qtbot.waitUntil(
            lambda: len(window.workspace.current.results) >= count and not window.workspace.jobs, timeout=timeout
        )
    except Exception:
        panel = window.jobs_panel
        states = [panel.tree.topLevelItem(i).text(1) for i in range(panel.tree.topLevelItemCount())]
        raise AssertionError(
            f"jobs {states}, {len(window.workspace.current.results)} results on {window.workspace.current.name}"
        ) from None


def test_a_whole_review_session(qtbot, tmp_path, settings_file, caplog):
    from gui.main_window import MainWindow
    from gui.settings import open_settings

    caplog.set_level(logging.WARNING)
    errors = []
    window = MainWindow(open_settings(settings_file), log_file=tmp_path / "app.log")
    qtbot.addWidget(window)
    window.error_shown.connect(lambda title, message: errors.append((title, message)))
    window.resize(1366, 768)
    window.show()
    qtbot.waitUntil(lambda: window.workspace.model_info is not None, timeout=120_000)

    # open a bundled sample and an outside photo
    sample = engine.sample_images()[0]
    outside = tmp_path / "outside photo.jpg"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(outside)
    for path in (sample, outside):
        with qtbot.waitSignal(window.image_opened, timeout=30_000):
            window.open_paths([path])
        qtbot.waitUntil(lambda: window.workspace.current.predictions is not None, timeout=60_000)
    window.image_list.setCurrentRow(0)
    qtbot.waitUntil(lambda: window.workspace.current.predictions is not None, timeout=60_000)

    # both games, then the same job again (the double run), then a cancelled long one
    window.method.steps.setValue(STEPS)
    window.method.game.setCurrentText("both")
    window.run_jobs()
    _wait_results(window, qtbot, 2)
    window.run_jobs()
    _wait_results(window, qtbot, 4)
    window.method.steps.setValue(LONG)
    window.method.patience.setValue(0)
    window.method.game.setCurrentText("preserve")
    (job,) = window.run_jobs()
    qtbot.waitUntil(lambda: _running(window, job, 2), timeout=60_000)
    window.actions["cancel"].trigger()
    _wait_results(window, qtbot, 5)
    assert window.workspace.current.results[-1].cancelled

    # re-run with few steps on another class, typed by name
    window.method.steps.setValue(STEPS)
    window.method.patience.setValue(30)
    window.predictions.search.setText("tabby")
    window.predictions.search.returnPressed.emit()
    target = window.predictions.target()
    window.run_jobs()
    _wait_results(window, qtbot, 6)
    assert window.workspace.current.results[-1].target == target

    # compare two results
    table = window.results.table
    table.clearSelection()
    table.selectRow(0)
    table.setRangeSelected(_row_range(table, 1), True)
    assert window.actions["compare"].isEnabled()
    window.compare_selected()
    assert len(window._compare_windows) == 1

    # export, report, session save and reopen
    window.results.select(window.workspace.current.results[0])
    window.exports.export_result(tmp_path / "export")
    qtbot.waitUntil(lambda: window.exports.last_export is not None, timeout=60_000)
    assert all(path.is_file() for path in window.exports.last_export.values())
    for suffix in ("pdf", "html"):
        assert window.exports.export_report(tmp_path / f"report.{suffix}", overwrite=True).stat().st_size > 1000
    session = tmp_path / "review.fgvis"
    assert window.sessions.save(session)
    reopened = MainWindow(open_settings(tmp_path / "other.ini"), log_file=tmp_path / "app.log")
    qtbot.addWidget(reopened)
    reopened.show()
    qtbot.waitUntil(lambda: reopened.workspace.model_info is not None, timeout=120_000)
    with qtbot.waitSignal(reopened.sessions.opened, timeout=60_000) as opened:
        reopened.sessions.open(session)
    assert opened.args[1] == [] and len(reopened.workspace.images) == 2
    assert (
        len(reopened.workspace.current.results) == 6
        and reopened.results.current_result() is reopened.workspace.current.results[0]
    )
    reopened.close()

    # batch with a corrupt file
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(sample, folder / sample.name)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    dialog = window.reviews.batch_dialog()
    dialog.input_dir.edit.setText(str(folder))
    dialog.out_dir.edit.setText(str(folder / "results"))  # inside the images folder
    for _ in range(2):  # the second run skips what is done and never explains its own outputs
        dialog.start()
        qtbot.waitUntil(lambda: dialog.summary is not None, timeout=120_000)
        assert [name for name, _ in dialog.summary.failures] == ["corrupt.jpg"]
    assert len(dialog.summary.skipped) == 1 and not dialog.summary.written
    dialog.close()

    # a bad model file: a clear message, the model stays
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"not a checkpoint")
    model = window.workspace.model_info
    with qtbot.waitSignal(window.error_shown, timeout=60_000):
        window.model.load(ModelSpec("resnet18", weights=bad))
    assert window.workspace.model_info is model
    _title, message = errors.pop()
    assert "weights.pth" in message and "Error:" not in message

    # resize, then close during a job
    window.resize(1920, 1080)
    QApplication.processEvents()
    window.method.steps.setValue(LONG)
    window.method.patience.setValue(0)
    (job,) = window.run_jobs()
    qtbot.waitUntil(lambda: _running(window, job, 1), timeout=60_000)
    window.close()
    assert window.worker_thread.thread.isFinished()

    assert errors == []
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and "weights.pth" not in r.getMessage()]
    assert logged == [], [r.getMessage() for r in logged]


def _running(window, job, steps):
    progress = window.workspace.last_progress
    return progress is not None and progress.job_id == job.id and progress.step >= steps


def _row_range(table, row):
    from PySide6.QtWidgets import QTableWidgetSelectionRange

    return QTableWidgetSelectionRange(row, 0, row, table.columnCount() - 1)
