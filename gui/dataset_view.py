"""The "Dataset review" window: the clusters of a batch's evidence maps per class (:mod:`engine.analysis`).

A class list; the 2-D embedding as a pyqtgraph scatter (one point per map, coloured by cluster, flagged
clusters ringed in red; stays fluid with tens of thousands of points); click a point or draw a lasso around
points to see their thumbnails, and one of them in the layered viewer (photo, explanation ``e``,
per-channel mask, evidence); a cluster browser with mean maps, flagged clusters first and in red, the
reasons, and a note per cluster saved with the analysis (``notes.json``), printed in the report and handed to
the main window (``notes_changed``) so that a saved ``.fgvis`` session keeps them; export of the report as
PDF (Qt) or HTML.

Opening a results folder without a saved analysis runs ``analyze`` in a background thread.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt, QThread, QTimer, Signal
from PySide6.QtGui import QAction, QBrush, QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QPlainTextEdit,
    QSplitter,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from engine.errors import FGVisError

from .canvas import Canvas, to_qimage
from .layer_panel import LayerPanel
from .layers import CHANNEL_MASK, DELETION, EVIDENCE, EXPLANATION, PHOTO, default_layers

log = logging.getLogger(__name__)

#: Thumbnails shown for a selection (a lasso around thousands of points shows the first ones).
MAX_GRID = 200
GRID_ICON = QSize(72, 72)
CLUSTER_ICON = QSize(64, 64)
NOTES_SAVE_DELAY_MS = 800
FLAG_RED = QColor(220, 0, 0)
PDF_FILTER, HTML_FILTER = "PDF report (*.pdf)", "HTML report (*.html)"


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Which of ``points`` ``(N, 2)`` lie inside ``polygon`` ``(M, 2)`` (closed implicitly; even-odd rule),
    as an ``(N,)`` bool array. Vectorised over the points: a lasso over 100,000 points costs milliseconds."""
    points = np.asarray(points, np.float64)
    polygon = np.asarray(polygon, np.float64)
    inside = np.zeros(len(points), bool)
    if len(polygon) < 3 or len(points) == 0:
        return inside
    x, y = points[:, 0], points[:, 1]
    for (x1, y1), (x2, y2) in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
        if y1 == y2:
            continue
        crosses = (y1 > y) != (y2 > y)
        at_x = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < at_x)
    return inside


def _pyqtgraph():
    import pyqtgraph as pg

    pg.setConfigOptions(antialias=False, background="w", foreground="k")
    return pg


class AnalysisThread(QThread):
    """Runs :func:`engine.analysis.analyze` (or reads a saved analysis) off the GUI thread;
    ``requestInterruption()`` stops an analysis at its next progress step (``cancelled`` follows)."""

    done = Signal(object)
    failed = Signal(str)
    progress = Signal(str)
    cancelled = Signal()

    def __init__(self, folder: Path, game: str = "preserve", parent=None) -> None:
        super().__init__(parent)
        self.folder, self.game = Path(folder), game

    def run(self) -> None:
        from engine.analysis import AnalysisCancelled, analyze, find_analysis, load_analysis

        try:
            if find_analysis(self.folder) is not None:
                self.done.emit(load_analysis(self.folder))
            else:
                self.done.emit(
                    analyze(self.folder, game=self.game, log=self.progress.emit, cancelled=self.isInterruptionRequested)
                )
        except AnalysisCancelled:
            self.cancelled.emit()
        except FGVisError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # an analysis bug must not take the app down: report it
            log.exception("dataset analysis failed")
            self.failed.emit(f"the analysis failed: {exc}")


def _lasso_view_box(pg):
    class LassoViewBox(pg.ViewBox):
        """A view box that, while ``lasso`` is on, turns a left-button drag into a free-hand outline and
        reports it (view coordinates) with ``lassoed``; otherwise it pans and zooms as usual."""

        lassoed = Signal(object)

        def __init__(self) -> None:
            super().__init__()
            self.lasso = False
            self._path: list[tuple[float, float]] = []
            self.outline = pg.PlotCurveItem(pen=pg.mkPen((30, 30, 30), width=1.5, style=Qt.PenStyle.DashLine))
            self.outline.setZValue(1000)
            self.addItem(self.outline, ignoreBounds=True)

        def mouseDragEvent(self, ev, axis=None) -> None:
            if not self.lasso or ev.button() != Qt.MouseButton.LeftButton:
                super().mouseDragEvent(ev, axis)
                return
            ev.accept()
            point = self.mapSceneToView(ev.scenePos())
            if ev.isStart():
                self._path = []
            self._path.append((point.x(), point.y()))
            xs, ys = zip(*self._path, strict=True)
            self.outline.setData([*xs, xs[0]], [*ys, ys[0]])
            if ev.isFinish():
                self.outline.setData([], [])
                self.lassoed.emit(np.array(self._path))

    return LassoViewBox


class DatasetReviewWindow(QMainWindow):
    """The dataset review of one results folder.

    Signals
    -------
    analysis_loaded(DatasetAnalysis), failed(str message), selection_changed(list of item indices),
    notes_changed(engine.results.session.ReviewNotes: every note of the analysis shown, after an edit or a merge)
    """

    analysis_loaded = Signal(object)
    failed = Signal(str)
    selection_changed = Signal(object)
    notes_changed = Signal(object)

    def __init__(self, parent=None, *, app_version: str = "") -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle("Dataset review")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.app_version = app_version
        self.analysis = None
        self.current = None  # ClassAnalysis shown
        self.current_cluster: int | None = None
        self.selection: list[int] = []
        self.shown_item: int | None = None
        self._thread: AnalysisThread | None = None
        self._incoming_notes: dict[str, str] = {}
        self.pg = pg = _pyqtgraph()

        self.class_list = QListWidget()
        self.class_list.setObjectName("classes")
        self.class_list.currentRowChanged.connect(self._on_class_row)
        self.cluster_list = QListWidget()
        self.cluster_list.setObjectName("clusters")
        self.cluster_list.setIconSize(CLUSTER_ICON)
        self.cluster_list.setWordWrap(True)
        self.cluster_list.currentRowChanged.connect(self._on_cluster_row)
        self.cluster_details = QLabel()
        self.cluster_details.setWordWrap(True)
        self.cluster_details.setTextFormat(Qt.TextFormat.RichText)
        self.notes = QPlainTextEdit()
        self.notes.setPlaceholderText(
            "Notes on this cluster (saved with the analysis and the session, printed in the report)"
        )
        self.notes.setMaximumHeight(90)
        self.notes.setEnabled(False)
        self.notes.textChanged.connect(self._on_note_edited)
        self._notes_timer = QTimer(self)
        self._notes_timer.setSingleShot(True)
        self._notes_timer.setInterval(NOTES_SAVE_DELAY_MS)
        self._notes_timer.timeout.connect(self.save_notes)

        self.view_box = _lasso_view_box(pg)()
        self.view_box.lassoed.connect(self.lasso_select)
        self.plot = pg.PlotWidget(viewBox=self.view_box)
        self.plot.setObjectName("embedding")
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setMenuEnabled(False)
        self.scatter = pg.ScatterPlotItem(pxMode=True, useCache=True, hoverable=False)
        self.scatter.sigClicked.connect(self._on_point_clicked)
        self.highlight = pg.ScatterPlotItem(
            pxMode=True, symbol="o", brush=None, pen=pg.mkPen((0, 0, 0), width=2), size=12
        )
        self.highlight.setZValue(10)
        self.plot.addItem(self.scatter)
        self.plot.addItem(self.highlight)
        self.plot_caption = QLabel("Open a batch results folder (File → Open batch results…)")
        self.plot_caption.setWordWrap(True)

        self.grid = QListWidget()
        self.grid.setObjectName("selection")
        self.grid.setViewMode(QListWidget.ViewMode.IconMode)
        self.grid.setIconSize(GRID_ICON)
        self.grid.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.grid.setMovement(QListWidget.Movement.Static)
        self.grid.setSpacing(4)
        self.grid.currentItemChanged.connect(self._on_grid_item)
        self.grid_caption = QLabel()
        self.layers = default_layers()
        self.canvas = Canvas(self.layers)
        self.layer_panel = LayerPanel(self.layers)
        self.item_info = QLabel()
        self.item_info.setWordWrap(True)
        self.item_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        left = _column(
            QLabel("<b>Classes</b>"),
            self.class_list,
            QLabel("<b>Clusters</b> (flagged first)"),
            self.cluster_list,
            self.cluster_details,
            self.notes,
            stretch={1: 1, 3: 3},
        )
        middle = _column(self.plot_caption, self.plot, stretch={1: 1})
        viewer = QSplitter(Qt.Orientation.Horizontal)
        viewer.addWidget(self.canvas)
        viewer.addWidget(self.layer_panel)
        viewer.setStretchFactor(0, 3)
        right = _column(self.grid_caption, self.grid, viewer, self.item_info, stretch={1: 2, 2: 3})
        splitter = QSplitter(Qt.Orientation.Horizontal)
        for widget in (left, middle, right):
            splitter.addWidget(widget)
        splitter.setSizes([300, 560, 520])
        self.setCentralWidget(splitter)
        self._build_actions()
        self.resize(1400, 860)

    # ------------------------------------------------------------------ actions
    def _build_actions(self) -> None:
        toolbar = QToolBar("Review")
        toolbar.setObjectName("review_toolbar")
        self.addToolBar(toolbar)
        menu = self.menuBar().addMenu("&File")

        def action(text: str, slot, tip: str, shortcut: str | None = None) -> QAction:
            act = QAction(text, self)
            act.setToolTip(tip)
            act.setStatusTip(tip)
            if shortcut:
                act.setShortcut(shortcut)
            act.triggered.connect(slot)
            return act

        self.open_action = action(
            "Open batch &results…",
            self.open_dialog,
            "Open a batch results folder (analysed if it has none yet)",
            "Ctrl+O",
        )
        self.export_action = action(
            "&Export report (PDF/HTML)…",
            self.export_dialog,
            "The cluster report with the notes, as PDF or self-contained HTML",
            "Ctrl+E",
        )
        self.lasso_action = action(
            "&Lasso", self._toggle_lasso, "Draw around points to select them (off: drag pans, wheel zooms)", "L"
        )
        self.lasso_action.setCheckable(True)
        self.fit_action = action("&Fit", self._fit_plot, "Show every point", "Ctrl+0")
        self.cancel_action = action(
            "&Cancel analysis",
            self.cancel_analysis,
            "Stop the analysis running for this folder (nothing is saved)",
            "Esc",
        )
        self.cancel_action.setEnabled(False)
        self.export_action.setEnabled(False)
        for act in (self.open_action, self.export_action, self.cancel_action):
            menu.addAction(act)
        menu.addSeparator()
        menu.addAction(action("&Close", self.close, "Close the dataset review", "Ctrl+W"))
        for act in (self.open_action, self.export_action, self.lasso_action, self.fit_action, self.cancel_action):
            toolbar.addAction(act)

    def _toggle_lasso(self, checked: bool) -> None:
        self.view_box.lasso = bool(checked)

    def _fit_plot(self) -> None:
        self.view_box.autoRange(padding=0.05)

    # ------------------------------------------------------------------ opening
    def open_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open batch results", "")
        if folder:
            self.open_folder(Path(folder))

    def open_folder(self, folder: Path, game: str = "preserve", notes: dict[str, str] | None = None) -> AnalysisThread:
        """Read the folder's saved analysis, or analyse it, in a background thread; ``analysis_loaded`` or
        ``failed`` follow. ``notes`` (e.g. from a session) join the analysis's own (:meth:`merge_notes`)."""
        if self._thread is not None and self._thread.isRunning():
            raise RuntimeError("an analysis is already running in this window")
        self._incoming_notes = {**self._incoming_notes, **(notes or {})}
        self.statusBar().showMessage(f"Opening {folder}…")
        thread = AnalysisThread(Path(folder), game, self)
        thread.done.connect(self.set_analysis)
        thread.failed.connect(self._on_failed)
        thread.cancelled.connect(self._on_cancelled)
        thread.progress.connect(self._on_progress)
        thread.finished.connect(self._on_thread_finished)
        self._thread = thread
        self.cancel_action.setEnabled(True)
        self.open_action.setEnabled(False)
        thread.start()
        return thread

    def cancel_analysis(self) -> None:
        """Stop the running analysis at its next step (between chunks of maps read and between the
        clustering stages; the 2-D t-SNE of 10,000 maps is one step of ~40 s)."""
        if self._thread is not None and self._thread.isRunning():
            self._thread.requestInterruption()
            self.cancel_action.setEnabled(False)
            self.statusBar().showMessage("Cancelling the analysis at its next step…")

    def _on_progress(self, message: str) -> None:
        if self._thread is not None and not self._thread.isInterruptionRequested():
            self.statusBar().showMessage(message)

    def _on_cancelled(self) -> None:
        self._incoming_notes = {}
        self.statusBar().showMessage("Analysis cancelled; nothing was saved", 8000)

    def _on_thread_finished(self) -> None:
        self.cancel_action.setEnabled(False)
        self.open_action.setEnabled(True)

    def _on_failed(self, message: str) -> None:
        self._incoming_notes = {}
        self.statusBar().showMessage("The folder could not be analysed", 8000)
        self.failed.emit(message)
        if self.isVisible():
            QMessageBox.warning(self, "Dataset review", message)

    def set_analysis(self, analysis) -> None:
        """Show ``analysis`` (a :class:`engine.analysis.DatasetAnalysis`)."""
        self.save_notes()
        self.analysis = analysis
        if self._incoming_notes:
            self.merge_notes(self._incoming_notes)
            self._incoming_notes = {}
        folder = analysis.folder or analysis.results_dir
        self.setWindowTitle(f"Dataset review — {analysis.results_dir.name or analysis.results_dir}")
        self.class_list.blockSignals(True)
        self.class_list.clear()
        ordered = sorted(analysis.classes, key=lambda c: (not c.flagged, c.result is None, c.target))
        self._class_order = ordered
        for entry in ordered:
            flagged = len(entry.flagged)
            text = f"{entry.label} ({entry.target}) · {len(entry.items)} maps"
            if entry.result is None:
                text += " · not analysed"
            elif flagged:
                text = f"⚠ {text} · {flagged} flagged"
            item = QListWidgetItem(text)
            item.setToolTip(entry.message or "")
            if flagged:
                item.setForeground(QBrush(FLAG_RED))
            self.class_list.addItem(item)
        self.class_list.blockSignals(False)
        self.export_action.setEnabled(True)
        skipped = f"; {len(analysis.skipped)} item(s) skipped (see the report)" if analysis.skipped else ""
        self.statusBar().showMessage(f"{folder}: {analysis.game} maps{skipped}")
        if ordered:
            self.class_list.setCurrentRow(0)
        self.analysis_loaded.emit(analysis)
        if analysis.notes:
            self.notes_changed.emit(self.review_notes())

    # ------------------------------------------------------------------ class and scatter
    def _on_class_row(self, row: int) -> None:
        if self.analysis is None or not 0 <= row < len(self._class_order):
            return
        self.show_class(self._class_order[row].target)

    def show_class(self, target: int) -> None:
        from engine.analysis import class_summary
        from engine.analysis.report import cluster_colour

        self.save_notes()
        entry = self.analysis.class_for(target)
        self.current, self.current_cluster = entry, None
        self.selection = []
        self.highlight.setData([], [])
        self.grid.clear()
        self.grid_caption.setText("")
        self._clear_viewer()
        self.cluster_list.blockSignals(True)
        self.cluster_list.clear()
        self.notes.blockSignals(True)
        self.notes.clear()
        self.notes.setEnabled(False)
        self.notes.blockSignals(False)
        self.cluster_details.clear()
        self.plot_caption.setText(class_summary(entry))
        if entry.result is None:
            self.scatter.setData([], [])
            self.cluster_list.blockSignals(False)
            return
        result = entry.result
        flagged = {cluster.index for cluster in entry.flagged}
        brushes = [QBrush(QColor(*cluster_colour(i))) for i in range(result.clusters_chosen)]
        pens = [
            self.pg.mkPen(FLAG_RED, width=1.5) if i in flagged else self.pg.mkPen(None)
            for i in range(result.clusters_chosen)
        ]
        labels = result.labels
        size = 8 if len(labels) <= 2000 else 5
        self.scatter.setData(
            x=result.embedding[:, 0],
            y=result.embedding[:, 1],
            data=np.arange(len(labels)),
            size=size,
            brush=[brushes[i] for i in labels],
            pen=[pens[i] for i in labels],
        )
        self._fit_plot()
        for cluster in entry.ordered_clusters():
            text = f"Cluster {cluster.index + 1} · {cluster.size} maps ({cluster.share:.0%})"
            if cluster.flagged:
                text = f"⚠ {text}\n{cluster.reasons[0] if cluster.reasons else ''}"
            item = QListWidgetItem(QIcon(QPixmap.fromImage(_mean_icon(result.mean_maps[cluster.index]))), text)
            item.setData(Qt.ItemDataRole.UserRole, cluster.index)
            item.setToolTip("\n".join(cluster.reasons) or "not flagged")
            if cluster.flagged:
                item.setForeground(QBrush(FLAG_RED))
            self.cluster_list.addItem(item)
        self.cluster_list.blockSignals(False)

    def _on_point_clicked(self, _item, points, _event=None) -> None:
        if len(points):
            index = int(points[0].data())
            self.select_items([index])

    def lasso_select(self, polygon) -> list[int]:
        """Select the points of the current class inside ``polygon`` ``(M, 2)`` (view coordinates)."""
        if self.current is None or self.current.result is None:
            return []
        inside = points_in_polygon(self.current.result.embedding, np.asarray(polygon))
        chosen = np.flatnonzero(inside).tolist()
        self.select_items(chosen, caption=f"{len(chosen)} map(s) in the lasso")
        return chosen

    def select_cluster(self, index: int) -> None:
        """Show cluster ``index`` of the current class: its members selected, its details and note."""
        for row in range(self.cluster_list.count()):
            if self.cluster_list.item(row).data(Qt.ItemDataRole.UserRole) == index:
                self.cluster_list.setCurrentRow(row)
                return

    def _on_cluster_row(self, row: int) -> None:
        item = self.cluster_list.item(row) if row >= 0 else None
        if item is None or self.current is None or self.current.result is None:
            return
        self.save_notes()
        index = int(item.data(Qt.ItemDataRole.UserRole))
        self.current_cluster = index
        cluster = self.current.result.clusters[index]
        self.cluster_details.setText(_cluster_html(cluster))
        self.notes.blockSignals(True)
        self.notes.setPlainText(self.analysis.note(self.current.target, index))
        self.notes.setEnabled(True)
        self.notes.blockSignals(False)
        caption = f"Cluster {index + 1}: {cluster.size} map(s)" + (" — flagged" if cluster.flagged else "")
        self.select_items(cluster.members.tolist(), caption=caption)

    def select_items(self, indices: list[int], caption: str | None = None) -> None:
        """Select these maps of the current class: ringed in the scatter, thumbnails in the grid, the first
        in the viewer."""
        from engine.analysis.report import member_thumbnail

        entry = self.current
        if entry is None or entry.result is None:
            return
        self.selection = [int(i) for i in indices]
        coords = entry.result.embedding[self.selection] if self.selection else np.zeros((0, 2))
        self.highlight.setData(coords[:, 0], coords[:, 1])
        self.grid.blockSignals(True)
        self.grid.clear()
        for index in self.selection[:MAX_GRID]:
            item = entry.items[index]
            picture = member_thumbnail(self.analysis, item, entry.result.thumbs[index], GRID_ICON.width())
            row = QListWidgetItem(QIcon(QPixmap.fromImage(to_qimage(picture))), _short(item.image))
            row.setData(Qt.ItemDataRole.UserRole, index)
            row.setToolTip(f"{item.image}\ncluster {int(entry.result.labels[index]) + 1}")
            self.grid.addItem(row)
        self.grid.blockSignals(False)
        more = f" (the first {MAX_GRID} shown)" if len(self.selection) > MAX_GRID else ""
        self.grid_caption.setText((caption or f"{len(self.selection)} map(s) selected") + more)
        if self.selection:
            self.grid.setCurrentRow(0)
        else:
            self._clear_viewer()
        self.selection_changed.emit(list(self.selection))

    # ------------------------------------------------------------------ viewer
    def _on_grid_item(self, current, _previous) -> None:
        if current is not None:
            self.show_item(int(current.data(Qt.ItemDataRole.UserRole)))

    def show_item(self, index: int) -> None:
        """One map of the current class in the layered viewer: the photo (when it can still be read),
        the explanation ``e``, the per-channel mask and the evidence, placed on the model's crop."""
        from engine.analysis import DatasetAnalysisError, read_evidence

        entry = self.current
        item = entry.items[index]
        self.shown_item = index
        explanation = _read_rgb(self.analysis.file_of(item, "explanation"))
        photo = _read_photo(item.image_path)
        box = tuple(item.crop_box) if item.crop_box and photo is not None else None
        problems = []
        if photo is None:
            problems.append("the photo cannot be read: the viewer shows the explanation in its place")
        try:
            evidence = read_evidence(self.analysis.results_dir, item)
        except DatasetAnalysisError as exc:
            evidence = None
            problems.append(str(exc))
        base = photo if photo is not None else explanation
        self.layers[PHOTO].set_data(base)
        self.layers[EXPLANATION].set_data(explanation, box if explanation is not None else None)
        self.layers[DELETION].set_data(None)
        if evidence is not None:
            channels = evidence if item.game == "preserve" else 1.0 - evidence
            if channels.shape[0] == 3:
                self.layers[CHANNEL_MASK].set_data(np.round(channels.transpose(1, 2, 0) * 255).astype(np.uint8), box)
            else:
                self.layers[CHANNEL_MASK].set_data(None)
            self.layers[EVIDENCE].set_data(evidence.mean(0), box)
        else:
            self.layers[CHANNEL_MASK].set_data(None)
            self.layers[EVIDENCE].set_data(None)
        self.canvas.fit()
        cluster = int(entry.result.labels[index]) + 1
        numbers = []
        if item.prob_original is not None:
            numbers.append(f"p(x) {item.prob_original:.3f}")
        if item.prob_explanation is not None:
            numbers.append(f"p(e) {item.prob_explanation:.3f}")
        if item.mask_mean is not None:
            numbers.append(f"mask mean {item.mask_mean:.3f}")
        text = f"<b>{_escape(item.image)}</b> · {_escape(entry.label)} · {item.game} · cluster {cluster}<br>"
        text += " · ".join(numbers)
        if problems:
            text += "<br><i>" + "<br>".join(_escape(p) for p in problems) + "</i>"
        self.item_info.setText(text)

    def _clear_viewer(self) -> None:
        for name in (PHOTO, EXPLANATION, DELETION, CHANNEL_MASK, EVIDENCE):
            self.layers[name].set_data(None)
        self.item_info.clear()
        self.shown_item = None

    # ------------------------------------------------------------------ notes and report
    def _on_note_edited(self) -> None:
        if self.analysis is None or self.current is None or self.current_cluster is None:
            return
        self.analysis.set_note(self.current.target, self.current_cluster, self.notes.toPlainText())
        self._notes_timer.start()
        self.notes_changed.emit(self.review_notes())

    def review_notes(self):
        """Every note of the analysis shown as an :class:`engine.results.session.ReviewNotes` (``None`` before an
        analysis is shown)."""
        from engine.results.session import ReviewNotes

        if self.analysis is None:
            return None
        return ReviewNotes(str(self.analysis.results_dir), self.analysis.game, dict(self.analysis.notes))

    def merge_notes(self, notes: dict[str, str]) -> None:
        """Join ``notes`` (keyed like :func:`engine.analysis.note_key`, e.g. a session's) with the analysis's
        own: a cluster without a note takes the given one; where both have different text, both are kept
        (the analysis folder's first). Written to the analysis folder; ``notes_changed`` follows. Before an
        analysis is shown they wait for it (and are dropped if it fails or is cancelled: the session that
        sent them keeps them)."""
        if self.analysis is None:
            self._incoming_notes.update(notes)
            return
        from engine.analysis import join_notes

        if join_notes(self.analysis.notes, notes):
            self._notes_timer.start()
            self.save_notes()
            if self.current is not None and self.current_cluster is not None:
                self.notes.blockSignals(True)
                self.notes.setPlainText(self.analysis.note(self.current.target, self.current_cluster))
                self.notes.blockSignals(False)
            self.notes_changed.emit(self.review_notes())

    def save_notes(self) -> bool:
        """Write pending notes to the analysis folder now; ``False`` (with a message) when that fails. An
        analysis that is not saved in a folder keeps its notes in the session only."""
        from engine.analysis import DatasetAnalysisError, save_notes

        if not self._notes_timer.isActive() or self.analysis is None:
            return True
        self._notes_timer.stop()
        if self.analysis.folder is None:
            self.statusBar().showMessage("Notes kept in the session (this analysis is not saved in a folder)", 5000)
            return True
        try:
            save_notes(self.analysis)
        except DatasetAnalysisError as exc:
            self.statusBar().showMessage(str(exc), 10000)
            return False
        self.statusBar().showMessage("Notes saved", 3000)
        return True

    def export_dialog(self) -> None:
        path, chosen = QFileDialog.getSaveFileName(
            self, "Export the dataset review", "dataset_review.pdf", f"{PDF_FILTER};;{HTML_FILTER}"
        )
        if path:
            path = Path(path)
            if path.suffix.lower() not in (".pdf", ".html", ".htm"):
                path = path.with_name(path.name + (".html" if chosen == HTML_FILTER else ".pdf"))
            try:
                self.export_report(path)
            except FGVisError as exc:
                QMessageBox.warning(self, "Export report", str(exc))

    def export_report(self, path: Path) -> Path:
        """Write the report with the current notes: PDF for a ``.pdf`` path, HTML otherwise."""
        from engine.analysis import analysis_report
        from engine.results.export import write_all_or_nothing

        from .pdf import write_pdf

        self.save_notes()
        html = analysis_report(self.analysis, app_version=self.app_version)
        path = Path(path)
        if path.suffix.lower() == ".pdf":
            write_pdf(html, path)
        else:
            write_all_or_nothing({path: html.encode("utf-8")})
        self.statusBar().showMessage(f"Report written: {path}", 8000)
        return path

    def closeEvent(self, event) -> None:
        self.save_notes()
        if self._thread is not None and self._thread.isRunning():
            self._thread.requestInterruption()
            self._thread.wait()  # until the analysis's next step
        super().closeEvent(event)


def _column(*widgets: QWidget, stretch: dict[int, int] | None = None) -> QWidget:
    holder = QWidget()
    layout = QVBoxLayout(holder)
    layout.setContentsMargins(4, 4, 4, 4)
    for index, widget in enumerate(widgets):
        layout.addWidget(widget, (stretch or {}).get(index, 0))
    return holder


def _mean_icon(mean: np.ndarray) -> QImage:
    from engine.analysis.report import mean_map_picture

    return to_qimage(mean_map_picture(mean, CLUSTER_ICON.width()))


def _cluster_html(cluster) -> str:
    x, y = cluster.centre
    reasons = "".join(f"<li>{_escape(r)}</li>" for r in cluster.reasons)
    head = "<b style='color:#c00000'>⚠ flagged</b>" if cluster.flagged else "<b>not flagged</b>"
    overlap = "-" if cluster.overlap is None else f"{cluster.overlap:.2f}"
    return (
        f"{head}<ul>{reasons}</ul>centre x {x:.2f}, y {y:.2f}; spread {cluster.spread:.2f}; border "
        f"{cluster.border_share:.0%}; concentration {cluster.concentration:.0%}; overlap {overlap}; tightness "
        f"{cluster.tightness:.2f}"
    )


def _read_rgb(path: Path | None) -> np.ndarray | None:
    from PIL import Image

    if path is None:
        return None
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _read_photo(path: str | None) -> np.ndarray | None:
    from engine.models.images import load_image

    if not path:
        return None
    try:
        return np.asarray(load_image(path).convert("RGB"))
    except FGVisError:
        return None


def _short(text: str, limit: int = 14) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escape(text: str) -> str:
    import html

    return html.escape(str(text))


__all__ = ["AnalysisThread", "DatasetReviewWindow", "points_in_polygon"]
