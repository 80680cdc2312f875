"""Defects a reviewer hit in the first ten minutes of a review session (issue 15), one test each, and the
things a professional tool is expected to have. Every test drives the real window and worker thread on
the toy classifier."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtWidgets import QApplication, QTabBar, QToolBar

import engine
from gui.controllers.exports import HTML_FILTER, PDF_FILTER, report_path
from gui.layers import EVIDENCE
from gui.results_panel import _details

from ..conftest import FRUITS

LONG = 100_000  # steps: a run that only ends when cancelled


def _run(window, qtbot, steps=4, game="preserve"):
    window.method.steps.setValue(steps)
    window.method.game.setCurrentText(game)
    results = []
    window.workspace.result_added.connect(results.append)
    jobs = window.run_jobs()
    qtbot.waitUntil(lambda: len(results) == len(jobs), timeout=60_000)
    window.workspace.result_added.disconnect(results.append)
    return results


def _start_long_job(window, qtbot):
    window.method.steps.setValue(LONG)
    window.method.patience.setValue(0)
    window.method.game.setCurrentText("preserve")
    (job,) = window.run_jobs()
    progress = lambda: window.workspace.last_progress  # noqa: E731
    qtbot.waitUntil(lambda: progress() is not None and progress().job_id == job.id, timeout=30_000)
    return job


def _front_tab(window) -> str:
    """The title of the dock tab in front (Jobs / Results)."""
    bars = [bar for bar in window.findChildren(QTabBar) if bar.count() and bar.isVisible()]
    return next(
        bar.tabText(bar.currentIndex()) for bar in bars if "Results" in [bar.tabText(i) for i in range(bar.count())]
    )


def _errors(window):
    shown = []
    window.error_shown.connect(lambda title, message: shown.append((title, message)))
    return shown


# ---------------------------------------------------------------- 1. the same job twice
def test_the_same_job_twice_gives_two_results_and_leaves_the_app_idle(opened, qtbot, tmp_path):
    window = opened
    errors = _errors(window)
    first = _run(window, qtbot)[0]
    second = _run(window, qtbot)[0]  # same class, game, defense and settings
    assert errors == []
    assert window.workspace.current.results == [first, second] and window.results.table.rowCount() == 2
    assert window.results.current_result() is second
    assert window.jobs_panel.state(first.job.id) == window.jobs_panel.state(second.job.id) == "done"
    assert not window.workspace.jobs and not window.actions["cancel"].isEnabled()
    assert window.actions["load_model"].isEnabled() and window.model.combo.isEnabled()
    assert window.sessions.autosave_timer.isActive()
    window.exports.export_result(tmp_path / "export")  # the export-done path selects the result again
    qtbot.waitUntil(lambda: window.exports.last_export is not None, timeout=30_000)
    assert errors == [] and window.results.current_result() is second


# ---------------------------------------------------------------- 2. the preview and the tabs
def test_a_running_job_does_not_replace_the_result_the_user_looks_at(opened, qtbot):
    window = opened
    first = _run(window, qtbot)[0]
    window.results.select(first)
    job = _start_long_job(window, qtbot)
    qtbot.waitUntil(lambda: window.workspace.last_progress.step >= 3, timeout=30_000)
    assert window.layers[EVIDENCE].data is first.evidence
    assert not window.jobs_panel._items[job.id].icon(0).isNull()  # the preview goes on in the job's row
    window.queue.cancel()
    qtbot.waitUntil(lambda: not window.workspace.jobs, timeout=30_000)


def test_the_jobs_tab_stays_in_front_until_the_queue_is_done(opened, qtbot):
    window = opened
    fronts = []
    window.workspace.result_added.connect(lambda result: fronts.append(_front_tab(window)))
    _run(window, qtbot, game="both")
    assert fronts == ["Jobs", "Results"]


def test_a_job_of_another_image_leaves_the_tabs_and_the_status_bar_alone(opened, qtbot, tmp_path):
    window = opened
    first = window.workspace.current
    job = _start_long_job(window, qtbot)
    second = tmp_path / "second.png"
    Image.fromarray(np.full((40, 50, 3), 90, np.uint8)).save(second)
    with qtbot.waitSignal(window.image_opened, timeout=30_000):
        window.open_paths([second])
    window.docks["jobs"].raise_()
    window.statusBar().showMessage("the user's message")
    seen = window.workspace.last_progress.step
    qtbot.waitUntil(lambda: window.workspace.last_progress.step > seen + 2, timeout=30_000)
    assert window.statusBar().currentMessage() == "the user's message"  # A's progress is not B's business
    window.queue.cancel()
    qtbot.waitUntil(lambda: not window.workspace.jobs, timeout=30_000)
    assert first.results and first.results[-1].job is job  # the partial result joined its own image
    assert _front_tab(window) == "Jobs"  # B has no results: nothing to bring forward


# ---------------------------------------------------------------- 3. the results table
@pytest.mark.parametrize("size", [(1366, 768), (1400, 900), (1920, 1080)])
def test_the_results_table_shows_several_rows_and_the_selected_one(opened, qtbot, size):
    window = opened
    window.resize(*size)
    for _ in range(3):
        _run(window, qtbot, steps=2, game="both")
    QApplication.processEvents()
    table = window.results.table
    assert table.rowCount() == 6
    assert table.viewport().height() >= 3 * table.rowHeight(0)
    window.results.select(window.workspace.current.results[0])
    QApplication.processEvents()
    rect = table.visualItemRect(table.item(table.currentRow(), 0))
    assert table.currentRow() == 0 and rect.top() >= 0 and rect.bottom() <= table.viewport().height()
    window.results.select(window.workspace.current.results[-1])
    QApplication.processEvents()
    rect = table.visualItemRect(table.item(5, 0))
    assert rect.top() >= 0 and rect.bottom() <= table.viewport().height()


# ---------------------------------------------------------------- 4. zoom of a new, larger photo
def _whole_photo_visible(canvas) -> bool:
    shown = canvas.mapToScene(canvas.viewport().rect()).boundingRect()
    return shown.adjusted(-1, -1, 1, 1).contains(canvas.sceneRect())


def test_a_larger_photo_opens_whole_and_the_view_refits_on_resize(opened, qtbot, tmp_path):
    window = opened
    canvas = window.canvas
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1500, 2000, 3), dtype=np.uint8)).save(big)
    with qtbot.waitSignal(window.image_opened, timeout=30_000):
        window.open_paths([big])
    QApplication.processEvents()
    assert canvas.sceneRect().width() == 2000 and _whole_photo_visible(canvas)
    window.resize(900, 700)
    QApplication.processEvents()
    assert _whole_photo_visible(canvas)
    canvas.zoom_in()  # a zoom the user chose is kept on resize
    zoom = canvas.zoom
    window.resize(1300, 850)
    QApplication.processEvents()
    assert canvas.zoom == pytest.approx(zoom) and not canvas.fitted


# ---------------------------------------------------------------- 5. what a result means
def test_the_panel_says_when_the_decision_is_another_class_and_what_deletion_evidence_is(opened, qtbot):
    window = opened
    preserved, deleted = _run(window, qtbot, game="both")
    other = (preserved.target + 1) % len(FRUITS)
    photo_chose_other = dataclasses.replace(
        preserved,
        top5_original=[(other, FRUITS[other], 0.9), *preserved.top5_original[1:]],
        top1_explanation=preserved.target,
        prob_original=0.016,
        prob_explanation=0.988,
    )
    text = _details(photo_chose_other)
    assert "decision is kept" not in text and "the decision on the photo is another class" in text
    assert FRUITS[other] in text
    assert "1 - m" in _details(deleted) and "<b>m</b>: what the mask kept" in _details(preserved)


def test_score_inflation_is_a_warning_in_the_results_panel(opened, qtbot):
    window = opened
    window.predictions.set_target(window.workspace.current.predictions[-1].index)  # a class the photo barely has
    (result,) = _run(window, qtbot, steps=30)
    inflated = result.prob_explanation >= 2 * result.prob_original and (
        result.prob_explanation - result.prob_original >= 0.2
    )
    notes = [w for w in result.warnings if "finds more for this class in e" in w]
    assert bool(notes) == inflated
    assert any("is not the model's top-1" in w for w in result.warnings)
    assert "⚠" in window.results.table.item(0, 10).text()
    assert "Warning" in window.results.details.text()


# ---------------------------------------------------------------- 6. the report's file type
def test_the_report_gets_the_suffix_of_the_chosen_filter(opened, qtbot, tmp_path, monkeypatch):
    assert report_path("/x/my_review", PDF_FILTER).name == "my_review.pdf"
    assert report_path("/x/my_review", HTML_FILTER).name == "my_review.html"
    assert report_path("/x/my_review.HTML", PDF_FILTER).name == "my_review.HTML"
    assert report_path("/x/v1.2", HTML_FILTER).name == "v1.2.html"
    window = opened
    _run(window, qtbot)
    from gui.controllers import exports

    for chosen, magic in ((PDF_FILTER, b"%PDF"), (HTML_FILTER, b"<!DOCTYPE html")):
        monkeypatch.setattr(
            exports.QFileDialog, "getSaveFileName", lambda *args, chosen=chosen: (str(tmp_path / "my_review"), chosen)
        )
        window.exports.export_report_dialog()
        suffix = ".pdf" if chosen == PDF_FILTER else ".html"
        assert (tmp_path / f"my_review{suffix}").read_bytes().startswith(magic)
    assert not (tmp_path / "my_review").exists()


# ---------------------------------------------------------------- 7. batch
@pytest.fixture
def image_folder(tmp_path, photo):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(photo, folder / "a.png")
    (folder / "b.jpg").write_bytes(b"broken")
    shutil.copy(photo, folder / "c.png")
    return folder


def _start_long_batch(window, qtbot, image_folder, steps_seen: int):
    """A batch of jobs that only end when cancelled, running (``steps_seen`` steps of its first item)."""
    window.method.steps.setValue(LONG)
    window.method.patience.setValue(0)
    dialog = window.reviews.batch_dialog()
    dialog.input_dir.edit.setText(str(image_folder))
    dialog.out_dir.edit.setText(str(image_folder.parent / "out"))
    dialog.start()
    qtbot.waitUntil(lambda: dialog.item.value() >= steps_seen, timeout=30_000)
    return dialog


def test_a_running_batch_shows_progress_asks_before_closing_and_holds_queued_jobs(opened, qtbot, image_folder):
    window = opened
    dialog = _start_long_batch(window, qtbot, image_folder, 2)
    assert dialog.done_items == 0 and dialog.overall.value() > 0  # moves before the first item ends
    (job,) = window.run_jobs()
    assert window.jobs_panel.state(job.id) == "queued: waiting for the batch to finish"
    assert "batch" in window.run_button.toolTip()
    dialog.confirm_stop = lambda: False
    dialog.close()
    assert dialog.isVisible() and dialog.batch_id is not None  # not stopped
    dialog.confirm_stop = lambda: True
    dialog.close()
    qtbot.waitUntil(lambda: not window.workspace.batch_running, timeout=30_000)  # the worker said the batch ended
    window.queue.cancel_all()
    qtbot.waitUntil(lambda: not window.workspace.jobs, timeout=30_000)
    assert not window.workspace.batch_running and window.jobs_panel.state(job.id).startswith("cancelled")


# ---------------------------------------------------------------- 8. the predictions panel
def test_typing_a_class_answers_the_hint_and_shows_its_probability_on_the_photo(opened):
    panel = opened.predictions
    panel.search.setText("e")
    panel.search.returnPressed.emit()
    assert "matches" in panel.status.text()
    panel.search.setText("elderberry")
    panel.search.returnPressed.emit()
    assert "matches" not in panel.status.text()
    probabilities = opened.workspace.current.probabilities
    index = FRUITS.index("elderberry")
    rank = int((probabilities > probabilities[index]).sum()) + 1
    assert f"p = {probabilities[index]:.3g} on this photo (rank {rank})" in panel.target_label.text()


# ---------------------------------------------------------------- 9. keys and tooltips
def test_plus_zooms_and_toolbar_tooltips_are_plain_words_with_their_keys(opened, qtbot):
    window = opened
    window.canvas.setFocus()
    zoom = window.canvas.zoom
    qtbot.keyClicks(window.canvas, "+")
    assert window.canvas.zoom == pytest.approx(zoom * 1.25)
    toolbar = window.findChild(QToolBar, "toolbar_main")
    for act in toolbar.actions():
        if act.text():
            assert "&" not in act.toolTip(), act.toolTip()
    assert window.actions["zoom_in"].toolTip().startswith("Zoom in (")
    assert "Ctrl+R" in window.run_button.toolTip()


# ---------------------------------------------------------------- 10. bad model files
@pytest.mark.parametrize("content", [b"", b"this is not a checkpoint", b"PK\x03\x04" + bytes(64)])
def test_a_bad_model_file_says_what_it_is_not(opened, qtbot, tmp_path, content):
    from gui.records import ModelSpec

    bad = tmp_path / "weights.pth"
    bad.write_bytes(content)
    with qtbot.waitSignal(opened.error_shown, timeout=60_000) as shown:
        opened.model.load(ModelSpec("resnet18", weights=bad))
    message = shown.args[1]
    assert "weights.pth" in message and "--" not in message
    for internal in ("IndexError", "RuntimeError", "miniz", "Traceback", "pop from empty list"):
        assert internal not in message


# ---------------------------------------------------------------- 11. layout
def test_the_window_fits_a_1366x768_laptop_and_shows_all_five_predictions(opened, qtbot):
    window = opened
    assert window.minimumSizeHint().height() <= 680  # 768 less a taskbar and a title bar
    window.resize(1366, 700)
    QApplication.processEvents()
    table = window.predictions.table
    assert table.rowCount() == 5
    assert table.visualItemRect(table.item(4, 0)).bottom() <= table.viewport().height()


def test_compare_shows_a_colour_bar_per_result(opened, qtbot):
    window = opened
    _run(window, qtbot, game="both")
    window.results.table.selectAll()
    window.compare_selected()
    (compare,) = window._compare_windows
    qtbot.addWidget(compare)
    assert len(compare.color_bars) == 2
    for bar, result in zip(compare.color_bars, window.workspace.current.results, strict=True):
        assert bar.shown.high == pytest.approx(float(np.percentile(result.evidence, 99.5)), abs=1 / 255)


# ---------------------------------------------------------------- 12. reports and sessions
def test_no_result_is_split_across_pdf_pages(opened, qtbot):
    from engine.results.report import image_report
    from gui.pdf import page_of, paged_document

    window = opened
    _run(window, qtbot, game="both")
    _run(window, qtbot, game="both")
    image = window.workspace.current
    document = paged_document(image_report(image.name, image.results, photo=image.pixels))
    first_rows, last_rows = page_of(document, "model input x"), page_of(document, "adversarial-evidence monitor")
    assert len(first_rows) == len(last_rows) == 4
    assert first_rows == last_rows and len(set(first_rows)) == 4


def test_a_reopened_session_keeps_result_numbers_and_the_selection(opened, make_window, qtbot, tmp_path):
    window = opened
    _run(window, qtbot, game="both")
    _run(window, qtbot)
    numbers = [window.results.table.item(row, 0).text() for row in range(3)]
    assert numbers == ["1", "2", "3"]
    window.results.select(window.workspace.current.results[1])
    path = tmp_path / "review.fgvis"
    assert window.sessions.save(path)
    other = make_window()
    with qtbot.waitSignal(other.sessions.opened, timeout=30_000):
        other.sessions.open(path)
    assert [other.results.table.item(row, 0).text() for row in range(3)] == numbers
    assert other.results.current_result() is other.workspace.current.results[1]


# ---------------------------------------------------------------- expected of a professional tool
def test_an_empty_window_offers_open_and_a_sample_and_says_why_run_is_off(window, qtbot):
    assert window.centre.currentWidget() is window.empty_state
    assert not window.run_button.isEnabled() and "open an image first" in window.run_button.toolTip()
    with qtbot.waitSignal(window.image_opened, timeout=30_000):
        window.empty_state.sample_button.click()
    assert window.workspace.current.path == engine.sample_images()[0]
    assert window.centre.currentWidget() is window.canvas


def test_delete_a_result_and_undo(opened, qtbot):
    window = opened
    first, second = _run(window, qtbot, game="both")
    window.results.select(first)
    window.actions["delete_result"].trigger()
    assert window.workspace.current.results == [second] and window.results.current_result() is second
    window.actions["undo_delete"].trigger()
    assert window.workspace.current.results == [first, second] and window.results.current_result() is first
    assert not window.actions["undo_delete"].isEnabled()


def test_every_method_setting_has_a_tooltip_and_the_shortcuts_are_listed(window):
    from PySide6.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox

    inputs = [w for kind in (QAbstractButton, QAbstractSpinBox, QComboBox) for w in window.method.findChildren(kind)]
    assert inputs and all(w.toolTip() for w in inputs), [w for w in inputs if not w.toolTip()]
    dialog = window.show_shortcuts()
    table = dialog.findChild(type(window.results.table))
    commands = {table.item(row, 0).text(): table.item(row, 1).text() for row in range(table.rowCount())}
    for command in (
        "Compare selected results",
        "Export report (HTML/PDF)",
        "Batch",
        "Cancel all jobs",
        "Delete result",
        "Zoom in",
    ):
        assert commands.get(command), command
    assert "+" in commands["Zoom in"]
    dialog.close()


def test_the_queue_eta_the_crop_outline_and_open_folder(opened, qtbot, tmp_path, monkeypatch):
    window = opened
    image = window.workspace.current
    outline = window.canvas.crop_outline
    left, top, right, bottom = image.crop_box
    assert outline.isVisible() and outline.rect().getCoords() == pytest.approx((left, top, right, bottom))
    window.method.steps.setValue(LONG)
    window.method.patience.setValue(0)
    window.method.game.setCurrentText("both")
    window.run_jobs()
    qtbot.waitUntil(
        lambda: window.workspace.last_progress is not None and window.workspace.last_progress.step >= 2, timeout=30_000
    )
    eta = window.jobs_panel.queue_eta_s()
    step_time = window.workspace.last_progress.elapsed_s / window.workspace.last_progress.step
    budget = window.workspace.last_progress.total  # each job's step budget (the panel caps LONG)
    assert eta == pytest.approx(step_time * (2 * budget - window.workspace.last_progress.step), rel=0.5)
    assert "2 job(s) in the queue" in window.jobs_panel.queue_label.text()
    window.queue.cancel_all()
    qtbot.waitUntil(lambda: not window.workspace.jobs, timeout=30_000)
    assert not window.actions["open_export_folder"].isEnabled()
    window.results.select(window.workspace.current.results[0])
    window.exports.export_result(tmp_path / "export")
    qtbot.waitUntil(lambda: window.exports.last_export is not None, timeout=30_000)
    opened_urls = []
    from gui.controllers import exports

    monkeypatch.setattr(exports.QDesktopServices, "openUrl", lambda url: opened_urls.append(url) or True)
    window.actions["open_export_folder"].trigger()
    assert [url.toLocalFile() for url in opened_urls] == [str(tmp_path / "export")]
    # the exported overlay is the photo with the evidence, never the outline
    overlay = np.asarray(Image.open(window.exports.last_export["overlay"]))
    assert overlay.shape[:2] == image.pixels.shape[:2]
    assert window.canvas.crop_outline.isVisible()


def test_a_model_file_with_another_class_count_says_what_to_set_in_the_dialog(opened, qtbot, tmp_path):
    import torch
    import torchvision

    from gui.records import ModelSpec

    weights = tmp_path / "ten_classes.pth"
    torch.save(torchvision.models.squeezenet1_1(num_classes=10).state_dict(), weights)
    with qtbot.waitSignal(opened.error_shown, timeout=60_000) as shown:
        opened.model.load(ModelSpec("squeezenet1_1", weights=weights))
    message = shown.args[1]
    assert "ten_classes.pth" in message and "In Load model, set Classes to 10." in message and "--" not in message


# ---------------------------------------------------------------- found by a second walk-through
def test_a_photo_of_the_same_size_also_opens_whole(opened, qtbot, tmp_path, photo):
    window = opened
    window.canvas.zoom_in()
    window.canvas.zoom_in()
    other = tmp_path / "same_size.png"
    Image.fromarray(np.full((90, 120, 3), 200, np.uint8)).save(other)
    with qtbot.waitSignal(window.image_opened, timeout=30_000):
        window.open_paths([other])
    QApplication.processEvents()
    assert window.workspace.current.path == other and _whole_photo_visible(window.canvas)


def test_the_same_file_opened_twice_is_listed_once(opened, qtbot, photo):
    window = opened
    with qtbot.waitSignal(window.image_opened, timeout=30_000):
        window.open_paths([photo])
    assert window.image_list.count() == 1 and len(window.workspace.images) == 1


def test_selection_does_not_pile_up_and_delete_takes_every_selected_row_with_undo_per_step(opened, qtbot):
    window = opened
    results = _run(window, qtbot, game="both") + _run(window, qtbot, game="both")
    table = window.results.table
    table.selectAll()
    _run(window, qtbot)  # a job finishing selects its result, alone
    assert len(window.results.selected_results()) == 1
    window.results.select(results[0])
    window.actions["delete_result"].trigger()
    table.selectAll()
    window.actions["delete_result"].trigger()
    assert window.workspace.current.results == []
    window.actions["undo_delete"].trigger()
    assert len(window.workspace.current.results) == 4 and results[0] not in window.workspace.current.results
    window.actions["undo_delete"].trigger()
    assert window.workspace.current.results[:4] == results and not window.actions["undo_delete"].isEnabled()


def test_esc_drops_a_job_that_waits_for_a_batch(opened, qtbot, image_folder):
    window = opened
    dialog = _start_long_batch(window, qtbot, image_folder, 1)
    (job,) = window.run_jobs()
    window.queue.cancel()
    dialog.cancel()
    qtbot.waitUntil(lambda: not window.workspace.jobs and not window.workspace.batch_running, timeout=30_000)
    assert window.jobs_panel.state(job.id) == "cancelled" and window.workspace.current.results == []


def test_result_dialogs_open_in_the_home_folder_not_the_photos(opened, tmp_path, monkeypatch):
    from gui.settings import last_folder, remember_folder

    settings = opened.settings
    assert last_folder(settings) == str(opened.workspace.current.path.parent)  # images: where the last one was
    monkeypatch.setattr(Path, "home", lambda: tmp_path)
    assert last_folder(settings, "results") == str(tmp_path)
    remember_folder(settings, "results", tmp_path / "missing")
    assert last_folder(settings, "results") == str(tmp_path)  # a folder that is gone: home again


def test_the_predictions_say_how_little_of_a_strip_the_model_sees(window, qtbot, tmp_path):
    strip = tmp_path / "strip.png"
    Image.fromarray(np.full((40, 400, 3), 90, np.uint8)).save(strip)
    with qtbot.waitSignal(window.image_opened, timeout=30_000):
        window.open_paths([strip])
    qtbot.waitUntil(lambda: window.workspace.current.predictions is not None, timeout=30_000)
    left, top, right, bottom = window.workspace.current.crop_box  # 40 px high -> 36 -> a 32x32 crop of 36x360
    share = (right - left) * (bottom - top) / (40 * 400)
    assert f"holds only {share:.0%} of this image" in window.predictions.status.text() and share < 0.1


def test_tiny_probabilities_are_not_printed_as_zero():
    from gui.results_panel import _probability

    assert (_probability(0.000185), _probability(0.0), _probability(0.5)) == ("1.85e-04", "0.000", "0.500")


def test_an_export_does_not_wait_for_the_running_job(opened, qtbot, tmp_path):
    window = opened
    first = _run(window, qtbot)[0]
    job = _start_long_job(window, qtbot)
    window.results.select(first)
    window.exports.export_result(tmp_path / "export")
    qtbot.waitUntil(lambda: window.exports.last_export is not None, timeout=30_000)
    assert window.workspace.running_job == job.id  # written between two steps of the run
    window.queue.cancel()
    qtbot.waitUntil(lambda: not window.workspace.jobs, timeout=30_000)


def test_a_ray_batch_of_a_model_handed_in_ready_says_why_it_cannot_run(window, qtbot, image_folder):
    dialog = window.reviews.batch_dialog()
    dialog.input_dir.edit.setText(str(image_folder))
    dialog.out_dir.edit.setText(str(image_folder.parent / "out"))
    dialog.engine.setCurrentIndex(dialog.engine.findData("ray"))
    assert dialog.address.isEnabled()
    dialog.start()
    qtbot.waitUntil(lambda: dialog.batch_id is None, timeout=30_000)
    assert "not loaded from files" in dialog.status.text() and not window.workspace.batch_running


def test_a_fifo_or_a_folder_opened_as_an_image_gives_a_message_and_nothing_blocks(opened, qtbot, tmp_path):
    import os

    window = opened
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    for path, words in ((pipe, "named pipe"), (tmp_path, "folder")):
        with qtbot.waitSignal(window.error_shown, timeout=30_000) as shown:
            window.open_paths([path])
        assert words in shown.args[1]
    assert len(window.workspace.images) == 1 and window.actions["run"].isEnabled()
