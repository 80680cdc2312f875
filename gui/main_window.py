"""The main window: composes the panels, the layered viewer and the controllers around one workspace.

State lives in :class:`gui.workspace.Workspace`; the job queue, sessions, exports and dataset reviews
are controllers in :mod:`gui.controllers`; the commands are declared in :mod:`gui.actions`. Everything
slow happens in the worker thread (:mod:`gui.worker`). This module shows the workspace and passes the
user's commands on.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QListWidget,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

import engine
from engine import ClassifierModel
from engine.results.batch import image_files

from . import __version__
from .actions import RESULTS_MENU, RUN_TIP, TOOLBAR, Actions, UiState, shortcuts_dialog
from .canvas import Canvas
from .compare import CompareWindow
from .controllers.exports import ExportController
from .controllers.images import ImageBrowser
from .controllers.jobs import JobQueue
from .controllers.model import ModelController
from .controllers.reviews import DatasetReviews
from .controllers.sessions import SessionController
from .controllers.viewer import ResultViewer
from .empty_state import EmptyState
from .jobs_panel import JobsPanel
from .layer_panel import LayerPanel
from .layers import EVIDENCE, apply_layer_settings, default_layers, layer_settings
from .method_panel import MethodPanel
from .predictions_panel import PredictionsPanel
from .records import ImageRecord, ModelSpec, ResultRecord
from .results_panel import ResultsPanel
from .settings import last_folder
from .window_state import RecentFiles, restore_window_state, save_window_state
from .worker import WorkerThread
from .workspace import Workspace

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    """FGVis Studio's main window.

    Parameters
    ----------
    settings
        Where window state and choices persist (tests pass a temporary INI file).
    model
        A ready classifier (tests use tiny ones); ``None`` loads the built-in model in the worker.
    log_file
        Shown in error dialogs so users can find the details.

    Signals
    -------
    image_opened(ImageRecord), error_shown(str title, str message)
    """

    image_opened = Signal(object)
    error_shown = Signal(str, str)

    def __init__(self, settings: QSettings, *, model: ClassifierModel | None = None, log_file: Path | None = None):
        super().__init__()
        self.settings, self.log_file = settings, log_file
        self.error_box: QMessageBox | None = None
        self.workspace = workspace = Workspace(self)
        self._compare_windows: list[CompareWindow] = []
        self.setWindowTitle("FGVis Studio")
        self.setAcceptDrops(True)

        self.layers = default_layers()
        self.canvas = Canvas(self.layers)
        self.empty_state = EmptyState(engine.sample_images())
        self.centre = QStackedWidget()
        self.centre.addWidget(self.empty_state)
        self.centre.addWidget(self.canvas)
        self.setCentralWidget(self.centre)
        self.image_list = QListWidget()
        self.image_list.setIconSize(QPixmap(64, 64).size())
        self.predictions, self.method, self.results = PredictionsPanel(), MethodPanel(), ResultsPanel()
        self.run_button = QPushButton("Run")
        self.layer_panel, self.jobs_panel, self.pixel_info = LayerPanel(self.layers), JobsPanel(), QLabel()
        self._build_docks()

        self.worker_thread = WorkerThread(model)
        worker = self.worker = self.worker_thread.worker
        evidence = self.layers[EVIDENCE]
        self.model = ModelController(workspace, worker, self, self.method)
        self.queue = JobQueue(
            workspace, worker, self, self.jobs_panel, self.method, self.predictions.target, lambda: evidence.colormap
        )
        panels = (self.image_list, self.predictions, self.results, self.layers, self.canvas)
        self.browser = ImageBrowser(workspace, worker, self, *panels, lambda path: self.recent.add(path))
        self.viewer = ResultViewer(workspace, self.layers, self.results, self.pixel_info, self)
        self.reviews = DatasetReviews(workspace, worker, self, self.method)
        self.sessions = SessionController(workspace, worker, self, self.reviews, self._view_state, self._apply_view)
        self.exports = ExportController(
            workspace, worker, self, self.results.current_result, self.canvas.render_image, evidence
        )
        self.actions = Actions(self, self._slots())
        places = {"samples": self._fill_samples, "recent": self._fill_recent, "docks": self._fill_dock_toggles}
        self.actions.fill_menus(self.menuBar(), places)
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("toolbar_main")
        for name in TOOLBAR:
            toolbar.addAction(self.actions[name])
        toolbar.addSeparator()
        toolbar.addWidget(QLabel(" Device: "))
        toolbar.addWidget(self.model.combo)
        for name in RESULTS_MENU:
            self.results.table.addAction(self.actions[name])
        self.statusBar().addWidget(self.pixel_info, 1)
        self.statusBar().addPermanentWidget(self.model.label)

        # Bound methods of this QObject, never lambdas: PySide6 runs a lambda in the emitting (worker) thread.
        self.browser.opened.connect(self.image_opened)
        self.browser.predicted.connect(self._update_actions)
        workspace.current_changed.connect(self._update_actions)
        workspace.model_changed.connect(self._update_actions)
        workspace.results_changed.connect(self._on_results_changed)
        workspace.result_added.connect(self._on_result_added)
        workspace.queue_changed.connect(self._on_queue_changed)
        self.queue.progress.connect(self.viewer.show_preview)
        self.queue.stopped.connect(self.viewer.drop_preview)
        self.queue.ended.connect(self._on_queue_ended)
        self.exports.exported.connect(self._on_exported)
        self.results.notes_edited.connect(self.sessions.schedule_autosave)
        self.results.result_selected.connect(self._on_result_selected)
        self.results.table.itemSelectionChanged.connect(self._update_actions)
        self.canvas.hovered.connect(self.viewer.hover)
        self.run_button.clicked.connect(self.run_jobs)
        self.empty_state.open_requested.connect(self.browser.open_dialog)
        self.empty_state.sample_requested.connect(lambda path: self.open_paths([path]))

        restore_window_state(self, settings, self.docks, self.method, self.layers)
        self.model.start(builtin=model is None)
        self._update_actions()

    # ------------------------------------------------------------------ construction
    def _slots(self) -> dict:
        """The callable behind each action of :data:`gui.actions.ACTIONS`."""
        sessions, exports, canvas = self.sessions, self.exports, self.canvas
        return {
            "open": self.browser.open_dialog, "open_session": sessions.open_dialog, "save_session": sessions.save_quick,
            "save_session_as": sessions.save_dialog, "export_result": exports.export_result_dialog,
            "export_report": exports.export_report_dialog, "open_export_folder": exports.open_export_folder,
            "batch": self.reviews.batch_dialog, "open_batch_results": self.open_batch_results_dialog,
            "load_model": self.model.load_dialog, "builtin_model": lambda: self.model.load(ModelSpec()),
            "quit": self.close, "run": self.run_jobs, "cancel": self.queue.cancel,
            "cancel_all": self.queue.cancel_all, "compare": self.compare_selected,
            "delete_result": self.delete_result, "undo_delete": self.undo_delete, "zoom_in": canvas.zoom_in,
            "zoom_out": canvas.zoom_out, "fit": canvas.fit, "actual": canvas.actual_size,
            "next": lambda: self.browser.step(1), "previous": lambda: self.browser.step(-1),
            "shortcuts": self.show_shortcuts, "about": self.about,
        }  # fmt: skip

    def _build_docks(self) -> None:
        method_box = QWidget()
        method_layout = QVBoxLayout(method_box)
        method_layout.setContentsMargins(0, 0, 0, 0)
        method_layout.addWidget(self.method)
        method_layout.addWidget(self.run_button)
        method_layout.addStretch(1)
        method_scroll = QScrollArea()  # on a 768-px screen the settings scroll instead of growing the window
        method_scroll.setWidget(method_box)
        method_scroll.setWidgetResizable(True)
        method_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        method_scroll.setMinimumHeight(120)
        left, right, bottom = (
            Qt.DockWidgetArea.LeftDockWidgetArea,
            Qt.DockWidgetArea.RightDockWidgetArea,
            Qt.DockWidgetArea.BottomDockWidgetArea,
        )
        self.docks = {}
        for name, title, widget, area in (
            ("images", "Images", self.image_list, left),
            ("predictions", "Predictions", self.predictions, right),
            ("method", "Method", method_scroll, right),
            ("layers", "Layers", self.layer_panel, left),
            ("jobs", "Jobs", self.jobs_panel, bottom),
            ("results", "Results", self.results, bottom),
        ):
            dock = QDockWidget(title, self)
            dock.setObjectName(f"dock_{name}")
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            self.docks[name] = dock
        self.tabifyDockWidget(self.docks["jobs"], self.docks["results"])
        self.docks["jobs"].raise_()

    def _fill_samples(self, menu) -> None:
        samples = menu.addMenu("Open &sample")
        for path in engine.sample_images():
            samples.addAction(path.stem, lambda p=path: self.open_paths([p]))

    def _fill_recent(self, menu) -> None:
        self.recent = RecentFiles(menu.addMenu("Open &recent"), self.settings, self.open_paths)

    def _fill_dock_toggles(self, menu) -> None:
        for dock in self.docks.values():
            menu.addAction(dock.toggleViewAction())

    def _update_actions(self) -> None:
        workspace = self.workspace
        running = bool(workspace.jobs)
        can_run = workspace.current is not None and workspace.model_info is not None
        self.actions.update(
            UiState(
                has_image=can_run,
                has_result=self.results.current_result() is not None,
                two_results=len(self.results.selected_results()) == 2,
                job_running=running,
                can_undo=workspace.can_undo,
                has_export=bool(self.exports.last_export),
            )
        )
        self.run_button.setEnabled(can_run)
        reason = self.run_blocked_reason()
        tip = f"Run is not available: {reason}" if reason else f"{RUN_TIP} (Ctrl+R)"
        if not reason and workspace.batch_running:
            tip += ". A batch is running: the job waits until it ends"
        self.run_button.setToolTip(tip)
        self.actions["run"].setToolTip(tip)
        self.centre.setCurrentWidget(self.canvas if workspace.current is not None else self.empty_state)
        self.jobs_panel.set_running(running)
        self.model.combo.setEnabled(not running)

    def run_blocked_reason(self) -> str:
        """Why Run is disabled, in words; ``""`` when it can run."""
        if self.workspace.model_info is None:
            return "the model is still loading (or could not be loaded: File → Load model)"
        if self.workspace.current is None:
            return "open an image first (File → Open image, or drop one on the window)"
        return ""

    # ------------------------------------------------------------------ images
    def open_paths(self, paths) -> None:
        """Open image files (in the worker; each appears when decoded, a bad one gives a dialog)."""
        self.browser.open_paths(paths)

    # ------------------------------------------------------------------ jobs and results
    def run_jobs(self) -> list:
        """Run: queue one job per game for the current image and target (:meth:`JobQueue.run`)."""
        queued = self.queue.run()
        if queued:
            self.docks["jobs"].raise_()
        return queued

    def _on_queue_changed(self) -> None:
        self.jobs_panel.set_waiting_reason("waiting for the batch to finish" if self.workspace.batch_running else "")
        self._update_actions()

    def _on_queue_ended(self, interrupted: bool) -> None:
        current = self.workspace.current
        if interrupted and current is not None and current.results:
            self.docks["results"].raise_()  # the queue ended by cancel or failure: back to the results

    def _on_result_added(self, result: ResultRecord) -> None:
        image = self.workspace.image(result.job.image_id)
        shown = image is None or image is self.workspace.current
        if shown and not self.workspace.jobs:  # the Jobs tab stays in front while more of the queue runs
            self.docks["results"].raise_()

    def _on_results_changed(self, image: ImageRecord, select: ResultRecord | None) -> None:
        if image is self.workspace.current:
            self.results.show_image(image, select=select)
        self._update_actions()

    def _on_result_selected(self, result: ResultRecord | None) -> None:
        self.viewer.show_result(result)
        self._update_actions()

    def _on_exported(self, _result: ResultRecord) -> None:
        self.results.show_image(self.workspace.current, select=self.results.current_result())  # re-scored column
        self._update_actions()

    def delete_result(self) -> None:
        """Remove the selected results from their image; :meth:`undo_delete` brings them back, one deletion
        at a time, newest first. The others are renumbered (numbers are positions, as in the report)."""
        image = self.workspace.current
        chosen = self.results.selected_results() or [r for r in [self.results.current_result()] if r is not None]
        if image is not None and chosen:
            numbers = ", ".join(f"#{i + 1}" for i in self.workspace.delete_results(image, chosen))
            self.show_status(f"Deleted result {numbers}; Ctrl+Z brings it back.", 8000)

    def undo_delete(self) -> None:
        deletion = self.workspace.undo_delete()
        if deletion is not None:
            if deletion.image is not self.workspace.current:
                self.browser.select(deletion.image)
                self.results.show_image(deletion.image, select=deletion.removed[0][1])
            self.show_status(f"Restored {len(deletion.removed)} result(s).", 5000)
        self._update_actions()

    def compare_selected(self) -> None:
        selected = self.results.selected_results()
        if len(selected) != 2 or self.workspace.current is None:
            self.show_error("Compare", "Select exactly two results of this image (Ctrl+click) to compare them.")
            return
        window = CompareWindow(self.workspace.current, selected, self.layers[EVIDENCE], self)
        window.destroyed.connect(lambda *_: self._compare_windows.remove(window))
        self._compare_windows.append(window)
        window.show()

    def open_batch_results_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open batch results", last_folder(self.settings, "batches"))
        if folder:
            self.reviews.open(Path(folder))

    # ------------------------------------------------------------------ sessions: what the window shows
    def _view_state(self) -> dict:
        selected = self.results.current_result()
        number = self.results.number(selected) if selected is not None else None
        return {
            "selected_result": number - 1 if number else -1,
            "method": self.method.settings(),
            "layers": layer_settings(self.layers),
        }

    def _apply_view(self, view: dict, images: list[ImageRecord]) -> None:
        """Show an opened session's ``images`` (already in the workspace) as the session saved them."""
        if isinstance(view.get("method"), dict):
            self.method.apply_settings(view["method"])
        if isinstance(view.get("layers"), dict):
            apply_layer_settings(self.layers, view["layers"])
        if not images:
            return
        current = view.get("current", 0)
        current = current if isinstance(current, int) and 0 <= current < len(images) else 0
        self.browser.select(images[current])
        selected, results = view.get("selected_result", -1), images[current].results
        if isinstance(selected, int) and not isinstance(selected, bool) and 0 <= selected < len(results):
            self.results.select(results[selected])
        self.docks["results"].raise_()

    # ------------------------------------------------------------------ messages
    def show_error(self, title: str, message: str) -> None:
        """A readable, non-blocking message box; the log file gets the details."""
        log.error("%s: %s", title, message)
        text = message + (f"\n\nDetails are in the log file:\n{self.log_file}" if self.log_file else "")
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_box = box
        box.finished.connect(lambda *_: setattr(self, "error_box", None) if self.error_box is box else None)
        box.open()
        self.error_shown.emit(title, message)

    def show_status(self, message: str, timeout_ms: int = 0) -> None:
        self.statusBar().showMessage(message, timeout_ms)

    def confirm(self, title: str, question: str) -> bool:
        """Ask yes/no (modal). Tests replace this to answer without a person."""
        return QMessageBox.question(self, title, question) == QMessageBox.StandardButton.Yes

    def show_shortcuts(self):
        """Help → Keyboard shortcuts: every action that has one."""
        self.shortcuts_dialog = shortcuts_dialog(self, self.actions.shortcut_rows())
        return self.shortcuts_dialog

    def about(self) -> None:
        text = (
            f"FGVis Studio {__version__}\nFine-grained, defended visual explanations (Wagner et al., CVPR "
            f"2019).\nLog file: {self.log_file}"
        )
        QMessageBox.about(self, "About FGVis Studio", text)

    # ------------------------------------------------------------------ settings and closing
    def closeEvent(self, event) -> None:
        """Cancel running work and wait for the worker thread to end (at most one optimisation step)."""
        save_window_state(self, self.settings, self.method, self.layers)
        self.settings.setValue("device", self.model.device)
        self.settings.sync()
        self.queue.stop()
        for window in list(self._compare_windows):
            window.close()
        self.reviews.close_all()
        self.worker_thread.stop()
        self.sessions.close()
        super().closeEvent(event)

    # ------------------------------------------------------------------ drag and drop
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = []
        for url in event.mimeData().urls():
            if url.isLocalFile():
                path = Path(url.toLocalFile())
                paths.extend(image_files(path) if path.is_dir() else [path])  # a folder: its images
        self.open_paths(paths)  # a file that is not an image gets a message
        event.acceptProposedAction()
