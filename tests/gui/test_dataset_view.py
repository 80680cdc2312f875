"""The "Dataset review" window (gui.dataset_view), offscreen: opened on a batch folder, its scatter and grids
looked at in a screenshot, click and lasso selection, the layered viewer, notes saved with the analysis,
report export (HTML, PDF) and the File menu entry of the main window."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

from engine.analysis import analyze, load_analysis
from engine.analysis.bench import marker_cluster, synthetic_class_maps
from engine.analysis.report import cluster_colour
from gui.dataset_view import DatasetReviewWindow, points_in_polygon
from tests.engine.test_analysis import fake_batch


@pytest.fixture
def batch(tmp_path):
    folder = tmp_path / "batch"
    truth = fake_batch(
        folder,
        {
            "ring": synthetic_class_maps(60, 0.2, seed=1),
            "plus": synthetic_class_maps(30, 0.0, seed=2),
        },
    )
    return folder, truth


@pytest.fixture
def review(qtbot, batch):
    folder, _ = batch
    analyze(folder, embedding="spectral")  # saved in batch/analysis
    window = DatasetReviewWindow()
    qtbot.addWidget(window)
    window.resize(1400, 860)
    window.show()
    with qtbot.waitSignal(window.analysis_loaded, timeout=60_000):
        window.open_folder(folder)
    return window


def _colour_pixels(image, colour, tolerance=12) -> int:
    pixels = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    pixels = pixels[:, : 4 * image.width()].reshape(image.height(), image.width(), 4)[..., :3]  # BGRA in memory
    target = np.array(colour[::-1])
    return int((np.abs(pixels.astype(int) - target).max(axis=2) <= tolerance).sum())


def test_points_in_polygon():
    square = np.array([[0, 0], [2, 0], [2, 2], [0, 2]])
    points = np.array([[1, 1], [3, 1], [-1, -1], [1.9, 0.1], [1, 2.5]])
    assert points_in_polygon(points, square).tolist() == [True, False, False, True, False]
    assert not points_in_polygon(points, square[:2]).any()  # not a polygon
    rng = np.random.default_rng(0)
    many = rng.uniform(-1, 1, (100_000, 2))
    inside = points_in_polygon(many, np.array([[-1, -1], [1, -1], [1, 1]]))  # the triangle below y = x
    assert np.array_equal(inside, many[:, 1] < many[:, 0])


def test_the_view_shows_the_scatter_and_the_flagged_cluster_first(review, tmp_path):
    window = review
    assert window.class_list.count() == 2 and window.class_list.item(0).text().startswith("⚠ ring")
    first = window.cluster_list.item(0)
    assert first.text().startswith("⚠ Cluster") and "border" in first.text()
    assert first.foreground().color() == QColor(220, 0, 0)
    window.cluster_list.setCurrentRow(0)
    entry = window.current
    flagged = entry.flagged[0]
    assert window.selection == flagged.members.tolist() and window.grid.count() == flagged.size
    assert window.shown_item == flagged.members[0]
    screenshot = window.grab()
    path = tmp_path / "dataset_review.png"
    assert screenshot.save(str(path))
    image = screenshot.toImage().convertToFormat(screenshot.toImage().Format.Format_ARGB32)
    plot = window.plot.grab().toImage().convertToFormat(image.Format.Format_ARGB32)
    for index in range(entry.result.clusters_chosen):  # every cluster's points are drawn in the scatter
        assert _colour_pixels(plot, cluster_colour(index)) > 20
    assert _colour_pixels(plot, (220, 0, 0), tolerance=30) > 10  # the flagged cluster's red rings
    grid = window.grid.grab().toImage().convertToFormat(image.Format.Format_ARGB32)
    grey = np.frombuffer(grid.constBits(), np.uint8)
    assert grey.std() > 10  # thumbnails, not an empty list
    canvas = window.canvas.grab().toImage().convertToFormat(image.Format.Format_ARGB32)
    assert np.frombuffer(canvas.constBits(), np.uint8).std() > 5  # the evidence in the layered viewer


def test_click_and_lasso_select_points(review):
    window = review
    coords = window.current.result.embedding
    points = window.scatter.points()
    assert len(points) == len(coords)
    window._on_point_clicked(window.scatter, [points[7]])
    assert window.selection == [7] and window.shown_item == 7 and window.grid.count() == 1
    low, high = coords.min(0) - 1, coords.max(0) + 1
    chosen = window.lasso_select(np.array([[low[0], low[1]], [high[0], low[1]], [high[0], high[1]], [low[0], high[1]]]))
    assert chosen == list(range(len(coords))) and window.grid.count() == len(coords)
    left = coords[:, 0] < np.median(coords[:, 0])
    middle = np.median(coords[:, 0])
    half = window.lasso_select(np.array([[low[0], low[1]], [middle, low[1]], [middle, high[1]], [low[0], high[1]]]))
    assert half == np.flatnonzero(left).tolist()
    assert "in the lasso" in window.grid_caption.text()


def test_a_lasso_drawn_with_the_mouse_selects(review, qtbot):
    window = review
    window.lasso_action.setChecked(True)
    window._toggle_lasso(True)
    got = []
    window.view_box.lassoed.connect(got.append)

    class Drag:  # what pyqtgraph hands mouseDragEvent: scene positions from start to finish
        def __init__(self, position, start=False, finish=False):
            self.position, self.start, self.finish = position, start, finish

        def button(self):
            return Qt.MouseButton.LeftButton

        def accept(self):
            pass

        def isStart(self):
            return self.start

        def isFinish(self):
            return self.finish

        def scenePos(self):
            return self.position

    rect = window.view_box.sceneBoundingRect()
    corners = [rect.topLeft(), rect.topRight(), rect.bottomRight(), rect.bottomLeft()]
    for number, corner in enumerate(corners):
        window.view_box.mouseDragEvent(Drag(corner, number == 0, number == len(corners) - 1))
    assert len(got) == 1 and len(window.selection) == len(window.current.items)


def test_notes_are_saved_with_the_analysis_and_go_into_the_report(review, batch, tmp_path, qtbot):
    window = review
    window.cluster_list.setCurrentRow(0)
    cluster = window.current_cluster
    window.notes.setPlainText("the corner tag, not the ring")
    assert window.save_notes()
    folder, _ = batch
    assert load_analysis(folder).note(0, cluster) == "the corner tag, not the ring"
    html_path = window.export_report(tmp_path / "review.html")
    assert "the corner tag, not the ring" in html_path.read_text(encoding="utf-8")
    pdf_path = window.export_report(tmp_path / "review.pdf")
    assert pdf_path.read_bytes().startswith(b"%PDF")


def test_switching_class_and_cluster_keeps_each_note(review, batch):
    window = review
    window.cluster_list.setCurrentRow(0)
    first = window.current_cluster
    window.notes.setPlainText("first")
    window.cluster_list.setCurrentRow(1)
    assert window.notes.toPlainText() == ""
    window.class_list.setCurrentRow(1)
    assert window.current.label == "plus"
    window.class_list.setCurrentRow(0)
    window.select_cluster(first)
    assert window.notes.toPlainText() == "first"
    window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)  # qtbot closes it again at the end
    window.close()  # saves the pending note
    folder, _ = batch
    assert load_analysis(folder).note(0, first) == "first"


def test_a_folder_without_analysis_is_analysed_in_the_background(qtbot, batch):
    folder, truth = batch
    window = DatasetReviewWindow()
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.analysis_loaded, timeout=120_000) as loaded:
        window.open_folder(folder)
    analysis = loaded.args[0]
    assert (folder / "analysis" / "analysis.json").is_file()
    ring = analysis.class_for(0)
    marked = np.array([truth[item.stem] for item in ring.items])
    found = marker_cluster(ring.result.labels, marked)
    assert found["purity"] >= 0.9 and found["recall"] >= 0.8


def test_an_analysis_in_the_window_can_be_cancelled(qtbot, batch):
    folder, _ = batch
    window = DatasetReviewWindow()
    qtbot.addWidget(window)
    assert not window.cancel_action.isEnabled()
    thread = window.open_folder(folder)
    assert window.cancel_action.isEnabled() and not window.open_action.isEnabled()
    with qtbot.waitSignal(thread.cancelled, timeout=60_000):
        window.cancel_action.trigger()
    qtbot.waitUntil(thread.isFinished, timeout=10_000)
    qtbot.waitUntil(window.open_action.isEnabled, timeout=10_000)
    assert window.analysis is None and not (folder / "analysis").exists()
    assert not window.cancel_action.isEnabled() and "cancelled" in window.statusBar().currentMessage()
    with qtbot.waitSignal(window.analysis_loaded, timeout=120_000):  # the folder opens again afterwards
        window.open_folder(folder)


def test_a_folder_that_is_not_a_batch_says_why(qtbot, tmp_path):
    window = DatasetReviewWindow()
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.failed, timeout=30_000) as failed:
        window.open_folder(tmp_path)
    assert "is empty" in failed.args[0]
    assert window.analysis is None and not window.export_action.isEnabled()


def test_many_points_are_drawn(qtbot, tmp_path):
    """10,000 maps in one class: the scatter holds them all (drawing speed is measured in docs/RESULTS.md)."""
    from engine.analysis import ClassAnalysis, DatasetAnalysis, MapItem, cluster_maps

    maps, _ = synthetic_class_maps(10_000, 0.05, size=16, seed=3)
    result = cluster_maps(maps, embedding="spectral")
    items = [MapItem(f"m{i}", f"m{i}.png", 0, "ring", "preserve", f"m{i}.json", {}) for i in range(len(maps))]
    analysis = DatasetAnalysis(tmp_path, "preserve", {}, [ClassAnalysis(0, "ring", items, result)])
    window = DatasetReviewWindow()
    qtbot.addWidget(window)
    window.show()
    window.set_analysis(analysis)
    assert len(window.scatter.points()) == 10_000
    image = window.plot.grab().toImage()
    assert _colour_pixels(image.convertToFormat(image.Format.Format_ARGB32), cluster_colour(0)) > 100


def test_main_window_opens_the_dataset_review(make_window, batch, qtbot):
    window = make_window()
    folder, _ = batch
    titles = [a.text() for a in window.menuBar().actions()[0].menu().actions()]
    assert "Open batch res&ults…" in titles
    review = window.reviews.open(folder)
    qtbot.addWidget(review)
    qtbot.waitUntil(lambda: review.analysis is not None, timeout=120_000)
    assert review.class_list.count() == 2
    data = json.loads((folder / "analysis" / "analysis.json").read_text())
    assert data["format"] == "fgvis-dataset-analysis"


def test_cluster_notes_go_into_the_session_and_come_back(make_window, batch, qtbot, tmp_path):
    """A note typed in the dataset review is in the saved session; reopening the session (in another
    window, with the analysis folder's own notes gone) opens the review with the note on its cluster."""
    folder, _ = batch
    window = make_window()
    review = window.reviews.open(folder)
    qtbot.waitUntil(lambda: review.analysis is not None, timeout=120_000)
    review.cluster_list.setCurrentRow(0)
    cluster = review.current_cluster
    review.notes.setPlainText("reads the border, not the ring")
    key = f"0:{cluster}"
    (snapshot,) = window.sessions.snapshot().reviews
    assert snapshot.notes == {key: "reads the border, not the ring"} and snapshot.game == "preserve"
    assert window.reviews.open(folder) is review  # one window per folder
    path = tmp_path / "review.fgvis"
    assert window.sessions.save(path)
    review.close()
    (folder / "analysis" / "notes.json").unlink()

    other = make_window()
    with qtbot.waitSignal(other.sessions.opened, timeout=30_000) as opened:
        other.sessions.open(path)
    assert opened.args == [0, []]
    (reopened,) = other.reviews.windows.values()
    qtbot.addWidget(reopened)
    qtbot.waitUntil(lambda: reopened.analysis is not None, timeout=120_000)
    assert reopened.analysis.note(0, cluster) == "reads the border, not the ring"
    assert load_analysis(folder).note(0, cluster) == "reads the border, not the ring"  # written back to the folder
    reopened.select_cluster(cluster)
    assert reopened.notes.toPlainText() == "reads the border, not the ring"


def test_session_notes_of_a_missing_folder_are_kept_and_different_notes_both_survive(
    make_window, batch, qtbot, tmp_path
):
    from engine.results.session import ReviewNotes, Session, save_session

    folder, _ = batch
    analysis = analyze(folder, embedding="spectral")
    analysis.set_note(0, 0, "folder's note")
    from engine.analysis import save_notes

    save_notes(analysis)
    path = tmp_path / "notes.fgvis"
    held = [
        ReviewNotes(str(folder), "preserve", {"0:0": "session's note"}),
        ReviewNotes(str(tmp_path / "gone"), "delete", {"1:1": "kept"}),
    ]
    save_session(path, Session([], reviews=held))
    window = make_window()
    with qtbot.waitSignal(window.sessions.opened, timeout=30_000) as opened:
        window.sessions.open(path)
    count, problems = opened.args
    assert count == 0 and len(problems) == 1 and "gone" in problems[0] and "kept in the session" in problems[0]
    (review,) = window.reviews.windows.values()
    qtbot.addWidget(review)
    qtbot.waitUntil(lambda: review.analysis is not None, timeout=120_000)
    assert review.analysis.note(0, 0) == "folder's note\n\nsession's note"
    notes = {(Path(r.results_dir).name, r.game): r.notes for r in window.sessions.snapshot().reviews}
    assert notes == {
        ("batch", "preserve"): {"0:0": "folder's note\n\nsession's note"},
        ("gone", "delete"): {"1:1": "kept"},
    }


def test_a_session_never_starts_an_analysis_and_early_notes_wait_for_theirs(make_window, batch, qtbot, tmp_path):
    """Reopening a session opens a review only where its folder holds a saved analysis (a session file
    may come from anyone: it must not start analyses or write into folders); notes given to a window
    before its analysis is shown wait for it."""
    from engine.results.session import ReviewNotes, Session, save_session

    folder, _ = batch  # a batch folder without a saved analysis
    path = tmp_path / "early.fgvis"
    save_session(path, Session([], reviews=[ReviewNotes(str(folder), "preserve", {"0:0": "kept"})]))
    window = make_window()
    with qtbot.waitSignal(window.sessions.opened, timeout=30_000) as opened:
        window.sessions.open(path)
    count, problems = opened.args
    assert count == 0 and len(problems) == 1 and "no saved analysis" in problems[0]
    assert not window.reviews.windows and not (folder / "analysis").exists()
    assert window.sessions.snapshot().reviews[0].notes == {"0:0": "kept"}

    review = DatasetReviewWindow()
    qtbot.addWidget(review)
    review.merge_notes({"0:1": "before the analysis"})  # no analysis yet: must not raise
    with qtbot.waitSignal(review.analysis_loaded, timeout=120_000):
        review.open_folder(folder)
    assert review.analysis.note(0, 1) == "before the analysis"
