"""Review features of the window: export, reports, sessions, autosave/recovery and batch runs."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import numpy as np
import pytest
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QMessageBox

from engine.colormaps import display_range
from engine.results.export import planned_paths
from engine.results.session import load_session


@pytest.fixture
def with_results(opened, qtbot):
    """The window with two results (preserve and delete) on the current photo."""
    window = opened
    window.method.steps.setValue(4)
    window.method.game.setCurrentText("both")
    results = []
    window.workspace.result_added.connect(results.append)
    window.run_jobs()
    qtbot.waitUntil(lambda: len(results) == 2, timeout=60_000)
    return window


def _export(window, qtbot, folder):
    window.exports.last_export = None
    window.exports.export_result(folder)
    qtbot.waitUntil(lambda: window.exports.last_export is not None or window.error_box is not None, timeout=30_000)
    return window.exports.last_export


def test_export_writes_every_file_and_the_rescored_check(with_results, qtbot, tmp_path):
    window = with_results
    result = window.results.current_result()
    paths = _export(window, qtbot, tmp_path / "export")
    assert paths is not None and all(p.is_file() for p in paths.values())
    assert np.array_equal(np.load(paths["mask"]), result.mask)
    from PIL import Image

    overlay = np.asarray(Image.open(paths["overlay"]))
    assert overlay.shape == (90, 120, 3)  # the viewer's picture at the photo's resolution
    summary = json.loads(paths["summary"].read_text())
    assert summary["prob_rescored"] == pytest.approx(result.prob_rescored)
    assert abs(result.prob_rescored - result.prob_explanation) < 0.01
    assert f"re-scores {result.prob_rescored:.3f}" in window.results.details.text()


def test_export_asks_before_replacing_and_reports_failures(with_results, qtbot, tmp_path, monkeypatch):
    window = with_results
    folder = tmp_path / "export"
    paths = _export(window, qtbot, folder)
    before = {p: p.stat().st_mtime_ns for p in paths.values()}
    monkeypatch.setattr(window, "confirm", lambda title, question: False)
    window.exports.export_result(folder)
    assert window.exports.last_export is paths and {p: p.stat().st_mtime_ns for p in paths.values()} == before
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with qtbot.waitSignal(window.error_shown, timeout=30_000) as shown:
        window.exports.export_result(blocker / "out")
    assert shown.args[0] == "Export failed" and "cannot write" in shown.args[1]


def test_the_evidence_scale_is_robust_by_default_and_fixed_one_click_away(with_results, qtbot, tmp_path):
    window = with_results
    deletion = window.workspace.current.results[-1]
    assert deletion.game == "delete" and window.results.current_result() is deletion
    window.layer_panel.select("Evidence")
    layer, panel = window.layers["Evidence"], window.layer_panel
    robust = display_range(deletion.evidence)
    assert layer.display_range() == robust and robust.high < 1.0 and not panel.fixed_scale.isChecked()
    assert panel.color_bar.shown == robust and robust.text() in panel.color_bar.toolTip()
    assert f"colour scale {robust.text()}" in window.exports.export_report(tmp_path / "robust.html").read_text()
    panel.fixed_scale.click()
    fixed = layer.display_range()
    assert (layer.scale, fixed.low, fixed.high) == ("fixed", 0.0, 1.0) and panel.color_bar.shown == fixed
    assert "colour scale 0 - 1 (fixed)" in window.exports.export_report(tmp_path / "fixed.html").read_text()
    summary = json.loads(_export(window, qtbot, tmp_path / "export")["summary"].read_text())
    assert (summary["scale"], summary["value_range"], summary["scale_text"]) == ("fixed", [0.0, 1.0], "0 - 1 (fixed)")
    panel.fixed_scale.click()
    assert layer.scale == "robust" and panel.color_bar.shown == robust


def test_pdf_and_html_reports(with_results, tmp_path):
    window = with_results
    window.results.notes.setPlainText("the square is the evidence")
    window.results.image_notes.setPlainText("synthetic test photo")
    html = window.exports.export_report(tmp_path / "report.html").read_text()
    pictures = re.findall(r"data:image/png;base64,[^']+", html)
    assert len(pictures) == 1 + 2 * 5  # the photo; per result x, e, overlay, colour bar, curve
    pdf = window.exports.export_report(tmp_path / "report.pdf")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b", data)) >= 2  # two results do not fit one A4 page
    assert len(re.findall(rb"/Subtype\s*/Image", data)) == len(set(pictures))  # Qt stores each picture once
    assert "the square is the evidence" in html and "synthetic test photo" in html


def test_session_save_and_open_restore_results_and_notes(with_results, make_window, qtbot, tmp_path):
    window = with_results
    window.results.notes.setPlainText("result note")
    window.results.image_notes.setPlainText("image note")
    saved = window.workspace.current.results
    window.layers["Explanation e"].visible = True
    window.layers["Evidence"].colormap = "magma"
    path = tmp_path / "review.fgvis"
    assert window.sessions.save(path)
    other = make_window()
    with qtbot.waitSignal(other.sessions.opened, timeout=30_000) as opened:
        other.sessions.open(path)
    assert opened.args == [1, []]
    image = other.workspace.current
    assert image.name == "photo.png" and image.notes == "image note"
    assert [r.game for r in image.results] == [r.game for r in saved]
    for mine, theirs in zip(image.results, saved, strict=True):
        assert np.array_equal(mine.mask, theirs.mask) and mine.prob_explanation == theirs.prob_explanation
    assert image.results[-1].notes == "result note"
    assert other.results.table.rowCount() == 2 and other.sessions.path == path
    assert other.layers["Explanation e"].visible and other.layers["Evidence"].colormap == "magma"


def test_a_moved_photo_is_reported_and_a_corrupt_session_refused(with_results, make_window, qtbot, tmp_path, photo):
    window = with_results
    path = tmp_path / "review.fgvis"
    window.sessions.save(path)
    shutil.move(photo, tmp_path / "moved.png")
    other = make_window()
    with qtbot.waitSignal(other.sessions.opened, timeout=30_000) as opened:
        other.sessions.open(path)
    count, problems = opened.args
    assert count == 1 and "not found" in problems[0]
    assert other.error_box is not None and "moved" in other.error_box.text()
    assert other.results.table.rowCount() == 2  # the results are still there to review
    broken = tmp_path / "broken.fgvis"
    broken.write_bytes(b"garbage")
    with qtbot.waitSignal(other.error_shown, timeout=30_000) as shown:
        other.sessions.open(broken)
    assert "not an FGVis Studio session" in shown.args[1]


def test_autosave_and_recovery_after_a_crash(with_results, make_window, qtbot):
    window = with_results
    window.sessions.autosave().result(timeout=30)
    recovery = window.sessions.recovery_path()
    assert len(load_session(recovery).images[0].results) == 2
    # A crash: the window never closes, the file stays. The next start offers it.
    other = make_window()
    assert other.sessions.offer_recovery()
    box = other.sessions.recovery_box
    with qtbot.waitSignal(other.sessions.opened, timeout=30_000):
        box.button(QMessageBox.StandardButton.Yes).click()
    assert len(other.workspace.current.results) == 2
    other.close()
    assert not recovery.exists()  # a clean exit of the window that took it over removes it


def test_batch_dialog_runs_through_the_worker(window, qtbot, tmp_path, photo, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(photo, images / "a.png")
    (images / "b.jpg").write_bytes(b"broken")
    shutil.copy(photo, images / "c.png")
    window.method.steps.setValue(3)
    dialog = window.reviews.batch_dialog()
    qtbot.addWidget(dialog)
    dialog.input_dir.edit.setText(str(images))
    dialog.out_dir.edit.setText(str(tmp_path / "out"))
    dialog.start()
    qtbot.waitUntil(lambda: dialog.summary is not None, timeout=60_000)
    assert len(dialog.summary.written) == 2 and [n for n, _ in dialog.summary.failures] == ["b.jpg"]
    assert dialog.overall.value() == dialog.overall.maximum() and dialog.overall.format() == "2 / 2 items done"
    assert any("could not explain b.jpg" in dialog.log.item(i).text() for i in range(dialog.log.count()))
    assert planned_paths(tmp_path / "out", "a_0_preserve")["summary"].parent.is_dir()
    assert (tmp_path / "out" / "index.html").is_file()
    opened_urls = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened_urls.append(url.toLocalFile()) or True)
    assert dialog.open_results() and opened_urls == [str(tmp_path / "out")]


def test_a_report_that_cannot_be_written_leaves_nothing(with_results, qtbot, tmp_path):
    window = with_results
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with qtbot.waitSignal(window.error_shown, timeout=30_000) as shown:
        assert window.exports.export_report(blocker / "report.pdf") is None
    assert shown.args[0] == "Report not written" and "cannot write" in shown.args[1]


def test_engine_warnings_are_shown_with_the_result(with_results):
    from gui.results_panel import _details

    result = dataclasses.replace(with_results.results.current_result(), warnings=["ran without the <CUDA> graph"])
    details = _details(result)
    assert "<b>⚠ Warning:</b> ran without the &lt;CUDA&gt; graph" in details
    assert "Warning" not in _details(dataclasses.replace(result, warnings=[]))
