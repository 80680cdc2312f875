"""The main window through its real worker thread, on a tiny classifier (pytest-qt, offscreen)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engine import FGVisConfig
from gui.layers import CHANNEL_MASK, EVIDENCE, EXPLANATION, PHOTO
from gui.records import JobSpec, ModelSpec, next_id

from ..conftest import FRUITS

LONG = 100_000  # steps: a run that only ends when cancelled


def _run(window, qtbot, steps=15, game="preserve", timeout=60_000):
    window.method.steps.setValue(steps)
    window.method.game.setCurrentText(game)
    results = []
    window.workspace.result_added.connect(results.append)
    jobs = window.run_jobs()
    qtbot.waitUntil(lambda: len(results) == len(jobs), timeout=timeout)
    return results


def test_opening_an_image_shows_it_and_its_predictions(opened):
    window = opened
    image = window.workspace.current
    assert image.name == "photo.png" and image.pixels.shape == (90, 120, 3)
    assert np.array_equal(window.layers[PHOTO].data, image.pixels)
    table = window.predictions.table
    assert table.rowCount() == 5
    probabilities = [float(table.item(row, 1).text()) for row in range(5)]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.001
    assert window.predictions.target() == image.predictions[0].index
    left, top, right, bottom = image.crop_box  # 90 px short side -> 36 -> centre 32x32 crop
    assert (round(right - left), round(bottom - top)) == (80, 80)
    assert window.actions["run"].isEnabled()


def test_a_corrupt_file_gives_a_dialog_and_changes_nothing(opened, tmp_path, qtbot):
    window = opened
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    before = (list(window.workspace.images), window.workspace.current, window.predictions.target())
    with qtbot.waitSignal(window.error_shown, timeout=30_000) as shown:
        window.open_paths([bad])
    _title, message = shown.args
    assert "broken.jpg" in message and "Traceback" not in message
    assert window.error_box is not None and window.error_box.isVisible()
    assert str(window.log_file) in window.error_box.text()
    assert (list(window.workspace.images), window.workspace.current, window.predictions.target()) == before
    assert window.image_list.count() == 1


def test_the_target_can_be_any_class_by_click_or_by_name(opened):
    panel = opened.predictions
    panel.table.selectRow(2)
    assert panel.target() == opened.workspace.current.predictions[2].index
    panel.search.setText("ELDER")
    panel.search.returnPressed.emit()
    assert panel.target() == FRUITS.index("elderberry")
    assert "elderberry" in panel.target_label.text()
    panel.search.setText("e")  # many classes contain "e": nothing changes, the user is told
    panel.search.returnPressed.emit()
    assert panel.target() == FRUITS.index("elderberry") and "matches" in panel.status.text()
    panel._on_completion("8: kiwi")
    assert panel.target() == 8


def test_a_short_job_runs_to_completion_in_signal_order(opened, qtbot):
    window = opened
    events = []  # appended in the worker thread, in emission order (lambdas run where the signal is emitted)
    worker = window.worker
    worker.job_started.connect(lambda job_id: events.append("started"))
    worker.job_progress.connect(lambda report: events.append("progress"))
    worker.job_finished.connect(lambda result: events.append("finished"))
    worker.job_failed.connect(lambda job_id, message: events.append("failed"))
    (result,) = _run(window, qtbot, steps=15)
    assert events[0] == "started" and events[-1] == "finished" and "failed" not in events
    assert events.count("progress") >= 1 and events.count("finished") == 1
    assert result.steps <= 15 and not result.cancelled
    assert result.mask.shape == (3, 32, 32) and result.evidence.shape == (32, 32)
    assert result.mask.min() >= 0.0 and result.mask.max() <= 1.0
    assert result.job.target == window.workspace.current.predictions[0].index
    assert window.workspace.current.results == [result]
    assert window.results.table.rowCount() == 1 and window.results.current_result() is result
    assert np.array_equal(window.layers[EVIDENCE].data, result.evidence)
    assert window.layers[EXPLANATION].rect == result.crop_box
    assert window.jobs_panel.state(result.job.id) == "done"
    assert not window.workspace.jobs and window.actions["run"].isEnabled() and not window.actions["cancel"].isEnabled()


def test_both_games_queue_two_jobs_that_run_in_order(opened, qtbot):
    results = _run(opened, qtbot, steps=5, game="both")
    assert [r.job.game for r in results] == ["preserve", "delete"]
    assert opened.results.table.rowCount() == 2
    # The second job on the same image reused the first one's reference pass, reference image and its score.
    assert opened.worker.reference_cache.hits == 3


def test_cancel_stops_within_a_step_and_keeps_the_partial_result(opened, qtbot):
    window = opened
    window.method.steps.setValue(LONG)
    window.method.patience.setValue(0)
    results = []
    window.workspace.result_added.connect(results.append)
    (job,) = window.run_jobs()
    qtbot.waitUntil(lambda: window.workspace.last_progress is not None, timeout=30_000)
    assert window.actions["cancel"].isEnabled()
    window.actions["cancel"].trigger()
    qtbot.waitUntil(lambda: bool(results), timeout=30_000)
    (result,) = results
    assert result.cancelled and 1 <= result.steps < LONG
    assert window.jobs_panel.state(job.id) == "cancelled (partial result)"
    assert "partial" in window.results.details.text().lower()


def test_cancel_all_also_drops_queued_jobs(opened, qtbot):
    window = opened
    window.method.steps.setValue(LONG)
    window.method.patience.setValue(0)
    window.method.game.setCurrentText("both")
    first, second = window.run_jobs()
    qtbot.waitUntil(lambda: window.workspace.last_progress is not None, timeout=30_000)
    window.queue.cancel_all()
    qtbot.waitUntil(lambda: not window.workspace.jobs, timeout=30_000)
    assert window.jobs_panel.state(first.id) == "cancelled (partial result)"
    assert window.jobs_panel.state(second.id) == "cancelled"
    assert len(window.workspace.current.results) == 1


def test_closing_during_a_run_cancels_and_ends_the_thread(opened, qtbot):
    window = opened
    window.method.steps.setValue(LONG)
    window.method.patience.setValue(0)
    window.run_jobs()
    qtbot.waitUntil(lambda: window.workspace.last_progress is not None, timeout=30_000)
    window.close()
    assert window.worker_thread.thread.isFinished()


def test_layers_follow_the_selected_result_and_the_inspector_reads_them(opened, qtbot):
    window = opened
    first, _second = _run(window, qtbot, steps=5, game="both")
    window.results.table.selectRow(0)
    assert np.array_equal(window.layers[EVIDENCE].data, first.evidence)
    channel_mask = window.layers[CHANNEL_MASK].data
    assert channel_mask.shape == (32, 32, 3) and channel_mask.dtype == np.uint8
    left, top, right, bottom = first.crop_box
    window.viewer.hover((left + right) / 2, (top + bottom) / 2)
    text = window.pixel_info.text()
    assert "RGB (" in text and "mask (" in text and f"evidence {first.evidence[16, 16]:.3f}" in text
    window.viewer.hover(1, 1)
    assert "outside the model's crop" in window.pixel_info.text()


def test_compare_opens_two_linked_views(opened, qtbot):
    window = opened
    _run(window, qtbot, steps=5, game="both")
    window.results.table.selectAll()
    assert window.actions["compare"].isEnabled()
    window.compare_selected()
    (compare,) = window._compare_windows
    qtbot.addWidget(compare)
    left, right = compare.canvases
    left.set_zoom(3.0)
    assert right.zoom == pytest.approx(3.0)


def test_a_bad_model_file_keeps_the_current_model(opened, tmp_path, qtbot):
    window = opened
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"this is not a checkpoint")
    info = window.workspace.model_info
    with qtbot.waitSignal(window.error_shown, timeout=60_000) as shown:
        window.model.load(ModelSpec("resnet18", weights=bad))
    assert "weights.pth" in shown.args[1]
    assert window.workspace.model_info is info
    (result,) = _run(window, qtbot, steps=3)  # the old model still works
    assert result.model_name == info.name


def test_a_failing_job_reports_and_the_next_one_runs(opened, qtbot):
    window = opened
    image = window.workspace.current
    bad = JobSpec(
        next_id(), image.id, image.name, image.pixels, 99, "no such class", "preserve", True, FGVisConfig(steps=2)
    )
    window.workspace.jobs[bad.id] = bad
    window.jobs_panel.add(bad)
    with qtbot.waitSignal(window.error_shown, timeout=30_000) as shown:
        window.worker.submit_job(bad)
    assert "99" in shown.args[1]
    assert window.jobs_panel.state(bad.id).startswith("failed")
    assert window.layers[EVIDENCE].data is None  # no preview of the failed run is left behind
    (result,) = _run(window, qtbot, steps=3)
    assert not result.cancelled


def test_settings_round_trip(make_window, qtbot, settings_file):
    window = make_window()
    window.method.steps.setValue(123)
    window.method.game.setCurrentText("delete")
    window.method.auto_lambda.setChecked(False)
    window.method.lambda_value.setValue(0.75)
    window.method.blur_sigma.setValue(10)
    window.layers[EVIDENCE].colormap = "viridis"
    window.layers[EVIDENCE].opacity = 0.4
    window.layers[EVIDENCE].scale = "fixed"
    window.resize(1000, 700)
    window.docks["images"].hide()
    window.close()
    again = make_window()
    assert again.method.steps.value() == 123 and again.method.game.currentText() == "delete"
    assert again.method.config().lambda_ == pytest.approx(0.75) and again.method.config().blur_sigma == 10
    again.method.reference.setCurrentText("zero")
    assert not again.method.blur_sigma.isEnabled()  # the blur is the blur reference's only
    assert again.layers[EVIDENCE].colormap == "viridis" and again.layers[EVIDENCE].opacity == pytest.approx(0.4)
    assert again.layers[EVIDENCE].scale == "fixed"
    screen = again.screen().availableGeometry()  # restoreGeometry keeps the window on the screen
    assert abs(again.width() - min(1000, screen.width())) <= 4
    assert again.docks["images"].isHidden() and not again.docks["layers"].isHidden()
    again.method.reset_button.click()
    assert again.method.config() == replace(FGVisConfig(), steps=FGVisConfig().steps)
    assert again.method.game.currentText() == "preserve" and again.method.defense.isChecked()


def test_stored_method_numbers_that_are_not_finite_keep_the_current_values(qtbot):
    from gui.method_panel import MethodPanel

    panel = MethodPanel()
    qtbot.addWidget(panel)
    before = panel.config()
    stored = {"blur_sigma": float("nan"), "lr": "inf", "lambda": float("-inf"), "preserve_ratio": "nan"}
    huge = {"steps": float("inf"), "patience": 10**400, "seed": 2**40}  # int(), float() or setValue() overflow
    panel.apply_settings({**stored, **huge, "delete_ratio": float("nan"), "auto_lambda": False})
    # A spin box clamps NaN and infinities to its maximum; a setting that is not a number is ignored.
    assert replace(panel.config(), lambda_=None) == before and panel.lambda_value.value() == 0.5


@pytest.mark.parametrize("auto_contrast", [False, True])
def test_the_old_auto_contrast_setting_opens_on_the_robust_scale(make_window, settings_file, auto_contrast):
    from gui.settings import open_settings, write_json

    old = open_settings(settings_file)
    write_json(old, "layers/evidence", {"colormap": "magma", "auto_contrast": auto_contrast})
    old.sync()
    window = make_window()
    assert window.layers[EVIDENCE].scale == "robust" and window.layers[EVIDENCE].colormap == "magma"
    assert not window.layer_panel.fixed_scale.isChecked()


def test_settings_of_another_version_are_started_afresh(settings_file):
    from gui.settings import SETTINGS_VERSION, open_settings

    old = open_settings(settings_file)
    old.setValue("version", SETTINGS_VERSION + 1)
    old.setValue("method", '{"steps": 5}')
    old.sync()
    fresh = open_settings(settings_file)
    assert fresh.value("method") is None and int(fresh.value("version")) == SETTINGS_VERSION


def test_images_can_be_stepped_through(window, photo, tmp_path, qtbot):
    second = tmp_path / "second.png"
    second.write_bytes(photo.read_bytes())
    for path in (photo, second):
        with qtbot.waitSignal(window.image_opened, timeout=30_000):
            window.open_paths([path])
    assert window.workspace.current.name == "second.png"
    window.actions["previous"].trigger()
    assert window.workspace.current.name == "photo.png"
    window.actions["next"].trigger()
    assert window.workspace.current.name == "second.png"
    recent = [action.text() for action in window.recent.menu.actions()]
    assert recent[:2] == [str(second), str(photo)]


def test_the_stall_monitor_sees_a_blocked_event_loop(qtbot):
    import time

    from PySide6.QtCore import QTimer

    from gui.stall import StallMonitor

    monitor = StallMonitor()
    monitor.start()
    qtbot.waitUntil(lambda: monitor.ticks >= 3, timeout=5_000)

    def block():
        end = time.perf_counter() + 0.12
        while time.perf_counter() < end:
            pass

    QTimer.singleShot(0, block)
    ticks = monitor.ticks
    qtbot.waitUntil(lambda: monitor.ticks >= ticks + 3, timeout=5_000)
    monitor.stop()
    assert monitor.max_stall_ms >= 100


def test_dropping_files_opens_them(window, photo, qtbot):
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(photo))])
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, data, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    with qtbot.waitSignal(window.image_opened, timeout=30_000) as opened:
        window.dropEvent(event)
    assert opened.args[0].path == photo


def test_an_unavailable_device_is_refused_and_the_choice_reverts(window, qtbot):
    window.model.combo.addItem("GPU 7 (not here)", "cuda:7")
    with qtbot.waitSignal(window.error_shown, timeout=30_000) as shown:
        window.model.combo.setCurrentIndex(window.model.combo.count() - 1)
    assert "cuda:7" in shown.args[1]
    assert window.model.combo.currentData() == window.workspace.model_info.device == "cpu"
