"""The main window: images, model, predictions, method, job queue, results and the layered viewer.

Everything slow happens in the worker thread (:mod:`gui.worker`); this module only wires widgets,
records and signals. Actions are built in one place and enabled in groups (needs an image, needs a
result, a job is running), as labelme does.
"""

from __future__ import annotations

import contextlib
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PySide6.QtCore import QByteArray, QSettings, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QIcon, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDockWidget,
    QFileDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

import engine
from engine import ClassifierModel, ConfigError, FGVisError
from engine.results.batch import image_files
from engine.results.export import ExportError, existing_files, write_all_or_nothing
from engine.results.report import image_report
from engine.results.session import ReviewNotes, Session, SessionImage, save_session

from . import __version__
from .batch_dialog import BatchDialog
from .canvas import Canvas, thumbnail
from .compare import CompareWindow
from .jobs_panel import JobsPanel
from .layer_panel import LayerPanel
from .layers import CHANNEL_MASK, DELETION, EVIDENCE, EXPLANATION, PHOTO, default_layers
from .method_panel import MethodPanel
from .model_dialog import ModelDialog
from .pdf import write_pdf
from .predictions_panel import PredictionsPanel
from .records import ImageRecord, JobProgress, JobSpec, ModelInfo, ModelSpec, ResultRecord, next_id
from .results_panel import ResultsPanel
from .settings import app_home, migrate_layer_style, read_json, write_json
from .stall import StallMonitor
from .worker import WorkerThread, available_devices

log = logging.getLogger(__name__)

SESSION_FILTER = "FGVis sessions (*.fgvis)"
PDF_FILTER, HTML_FILTER = "PDF report (*.pdf)", "HTML report (*.html)"
REPORT_FILTER = f"{PDF_FILTER};;{HTML_FILTER}"
AUTOSAVE_DELAY_MS = 2000
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp *.gif);;All files (*)"
MAX_RECENT = 10


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
    image_opened(ImageRecord), result_added(ResultRecord), error_shown(str title, str message)
    """

    image_opened = Signal(object)
    result_added = Signal(object)
    error_shown = Signal(str, str)
    session_opened = Signal(int, object)  # number of images, list of problems

    def __init__(self, settings: QSettings, *, model: ClassifierModel | None = None, log_file: Path | None = None):
        super().__init__()
        self.settings = settings
        self.log_file = log_file
        self.images: list[ImageRecord] = []
        self.current: ImageRecord | None = None
        #: Cluster notes of the dataset reviews, by (results folder, game): kept in the session.
        self.reviews: dict[tuple[str, str], ReviewNotes] = {}
        self._review_windows: dict[tuple[str, str], object] = {}
        self.model_info: ModelInfo | None = None
        self.jobs: dict[int, JobSpec] = {}
        self.running_job: int | None = None
        self.last_progress: JobProgress | None = None
        self.error_box: QMessageBox | None = None
        self.session_path: Path | None = None
        self._opening_session: Path | None = None
        self._owns_recovery = False  # only a recovery file this window wrote (or took over) is removed on exit
        self.last_export: dict | None = None
        self._batches: set[int] = set()  # batches the worker is running
        self._deleted: list[tuple[ImageRecord, list[tuple[int, ResultRecord]]]] = []  # deletions to undo, last last
        self._compare_windows: list[CompareWindow] = []
        self._closing = False
        self.setWindowTitle("FGVis Studio")
        self.setAcceptDrops(True)
        self.stall_monitor = StallMonitor(self)

        self.layers = default_layers()
        self.canvas = Canvas(self.layers)
        self.empty_state = self._build_empty_state()
        self.centre = QStackedWidget()
        self.centre.addWidget(self.empty_state)
        self.centre.addWidget(self.canvas)
        self.setCentralWidget(self.centre)
        self.image_list = QListWidget()
        self.image_list.setIconSize(QPixmap(64, 64).size())
        self.predictions = PredictionsPanel()
        self.method = MethodPanel()
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Queue an explanation of the target class for the current image (Ctrl+R)")
        self.layer_panel = LayerPanel(self.layers)
        self.jobs_panel = JobsPanel()
        self.results = ResultsPanel()
        self.pixel_info = QLabel()
        self.model_label = QLabel("Loading model…")
        self.device_combo = QComboBox()
        self.device_combo.setToolTip("Where the model runs")
        for device, name in available_devices():
            self.device_combo.addItem(name, device)

        self._build_docks()
        self._build_actions()
        self._build_menus_and_toolbar()
        self.statusBar().addWidget(self.pixel_info, 1)
        self.statusBar().addPermanentWidget(self.model_label)

        self.worker_thread = WorkerThread(model)
        worker = self.worker = self.worker_thread.worker
        worker.image_loaded.connect(self._on_image_loaded)
        worker.image_failed.connect(self._on_image_failed)
        worker.predictions_ready.connect(self._on_predictions)
        worker.model_loaded.connect(self._on_model_loaded)
        # Bound methods of this QObject, never lambdas: PySide6 runs a lambda in the emitting (worker) thread.
        worker.model_failed.connect(self._on_model_failed)
        worker.job_started.connect(self._on_job_started)
        worker.job_progress.connect(self._on_job_progress)
        worker.job_finished.connect(self._on_job_finished)
        worker.job_failed.connect(self._on_job_failed)
        worker.export_done.connect(self._on_export_done)
        worker.export_failed.connect(self._on_export_failed)
        worker.session_loaded.connect(self._on_session_loaded)
        worker.session_failed.connect(self._on_session_failed)
        worker.batch_finished.connect(self._on_batch_ended)
        worker.batch_failed.connect(self._on_batch_ended)
        self.results.notes_edited.connect(self.schedule_autosave)
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setSingleShot(True)
        self.autosave_timer.setInterval(AUTOSAVE_DELAY_MS)
        self.autosave_timer.timeout.connect(self.autosave)
        self._autosaver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fgvis-autosave")

        self.image_list.currentRowChanged.connect(self._on_image_row)
        self.results.result_selected.connect(self._show_result)
        self.results.table.itemSelectionChanged.connect(self._update_actions)
        self.canvas.hovered.connect(self._on_hover)
        self.run_button.clicked.connect(self.run_jobs)
        self.jobs_panel.cancel_requested.connect(self.cancel_job)
        self.jobs_panel.cancel_all_requested.connect(self.cancel_all)
        self.device_combo.currentIndexChanged.connect(self._on_device_chosen)

        self._restore_settings()
        device = self.device_combo.currentData()
        if model is None:
            worker.submit_load_model(ModelSpec(), device)
        else:
            worker.submit_set_device(device)
        self._update_actions()

    # ------------------------------------------------------------------ construction
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
        self.docks = {}
        for name, title, widget, area in (
            ("images", "Images", self.image_list, Qt.DockWidgetArea.LeftDockWidgetArea),
            ("predictions", "Predictions", self.predictions, Qt.DockWidgetArea.RightDockWidgetArea),
            ("method", "Method", method_scroll, Qt.DockWidgetArea.RightDockWidgetArea),
            ("layers", "Layers", self.layer_panel, Qt.DockWidgetArea.LeftDockWidgetArea),
            ("jobs", "Jobs", self.jobs_panel, Qt.DockWidgetArea.BottomDockWidgetArea),
            ("results", "Results", self.results, Qt.DockWidgetArea.BottomDockWidgetArea),
        ):
            dock = QDockWidget(title, self)
            dock.setObjectName(f"dock_{name}")
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            self.docks[name] = dock
        self.tabifyDockWidget(self.docks["jobs"], self.docks["results"])
        self.docks["jobs"].raise_()

    def _build_actions(self) -> None:
        def action(text, slot, shortcut=None, tip=""):
            act = QAction(text, self)
            if shortcut:
                act.setShortcuts(shortcut if isinstance(shortcut, list) else [shortcut])
            act.setToolTip(_tooltip(tip or text, act))
            act.setStatusTip(tip or _plain(text))
            act.triggered.connect(slot)
            return act

        keys = QKeySequence.StandardKey
        self.actions = {
            "open": action("&Open image…", self.open_dialog, QKeySequence(keys.Open)),
            "open_session": action("Open &session…", self.open_session_dialog),
            "save_session": action("&Save session", self.save_session_quick, QKeySequence(keys.Save)),
            "save_session_as": action("Save session &as…", self.save_session_dialog, QKeySequence("Ctrl+Shift+S")),
            "export_result": action("&Export result…", self.export_result_dialog, QKeySequence("Ctrl+E")),
            "export_report": action(
                "Export &report (HTML/PDF)…", self.export_report_dialog, QKeySequence("Ctrl+Shift+E")
            ),
            "open_export_folder": action(
                "Open the export &folder",
                self.open_export_folder,
                None,
                "Show the files of the last export in the file manager",
            ),
            "batch": action("&Batch…", self.batch_dialog, QKeySequence("Ctrl+B"), "Explain every image of a folder"),
            "open_batch_results": action(
                "Open batch res&ults…",
                self.open_batch_results_dialog,
                None,
                "Dataset review: the strategies the model uses per class across a batch, suspicious ones flagged",
            ),
            "load_model": action("Load &model…", self.load_model_dialog),
            "builtin_model": action("Use the &built-in model", self.use_builtin_model),
            "quit": action("&Quit", self.close, QKeySequence(keys.Quit)),
            "run": action(
                "&Run",
                self.run_jobs,
                [QKeySequence("Ctrl+R"), QKeySequence("F5")],
                "Queue an explanation of the target class for the current image",
            ),
            "cancel": action(
                "&Cancel job",
                self.cancel_job,
                QKeySequence("Esc"),
                "Stop the running job after its current step; its partial result is kept",
            ),
            "cancel_all": action(
                "Cancel &all jobs",
                self.cancel_all,
                QKeySequence("Shift+Esc"),
                "Stop the running job and drop the queued ones",
            ),
            "compare": action(
                "Co&mpare selected results",
                self.compare_selected,
                QKeySequence("Ctrl+M"),
                "Show two selected results side by side (Ctrl+click two rows of Results)",
            ),
            "delete_result": action(
                "&Delete result",
                self.delete_result,
                QKeySequence(keys.Delete),
                "Remove the selected result from this image (Undo brings it back)",
            ),
            "undo_delete": action("&Undo delete", self.undo_delete, QKeySequence(keys.Undo)),
            "zoom_in": action(
                "Zoom &in", self.canvas.zoom_in, [QKeySequence(keys.ZoomIn), QKeySequence("+"), QKeySequence("=")]
            ),
            "zoom_out": action("Zoom &out", self.canvas.zoom_out, [QKeySequence(keys.ZoomOut), QKeySequence("-")]),
            "fit": action("&Fit", self.canvas.fit, QKeySequence("Ctrl+0")),
            "actual": action("&1:1", self.canvas.actual_size, QKeySequence("Ctrl+1")),
            "next": action("&Next image", lambda: self.step_image(1), QKeySequence("PgDown")),
            "previous": action("&Previous image", lambda: self.step_image(-1), QKeySequence("PgUp")),
            "shortcuts": action("&Keyboard shortcuts", self.show_shortcuts, QKeySequence(keys.HelpContents)),
            "about": action("&About", self.about),
        }
        self.action_groups = {
            "needs_image": [self.actions["run"], self.actions["next"], self.actions["previous"]],
            "needs_result": [
                self.actions["export_result"],
                self.actions["export_report"],
                self.actions["delete_result"],
            ],
            "needs_two_results": [self.actions["compare"]],
            "job_running": [self.actions["cancel"], self.actions["cancel_all"]],
            "idle": [self.actions["load_model"], self.actions["builtin_model"]],
        }
        for act in self.actions.values():
            self.addAction(act)
        self.actions["open_export_folder"].setEnabled(False)
        self.actions["undo_delete"].setEnabled(False)
        for name in ("compare", "delete_result", "undo_delete"):
            self.results.table.addAction(self.actions[name])

    def _build_menus_and_toolbar(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.actions["open"])
        self.sample_menu = file_menu.addMenu("Open &sample")
        for path in engine.sample_images():
            self.sample_menu.addAction(path.stem, lambda p=path: self.open_paths([p]))
        self.recent_menu = file_menu.addMenu("Open &recent")
        file_menu.addSeparator()
        for name in ("open_session", "save_session", "save_session_as"):
            file_menu.addAction(self.actions[name])
        file_menu.addSeparator()
        for name in ("export_result", "export_report", "open_export_folder", "batch", "open_batch_results"):
            file_menu.addAction(self.actions[name])
        file_menu.addSeparator()
        file_menu.addAction(self.actions["load_model"])
        file_menu.addAction(self.actions["builtin_model"])
        file_menu.addSeparator()
        file_menu.addAction(self.actions["quit"])
        view_menu = menu.addMenu("&View")
        for name in ("zoom_in", "zoom_out", "fit", "actual", "next", "previous"):
            view_menu.addAction(self.actions[name])
        view_menu.addSeparator()
        for dock in self.docks.values():
            view_menu.addAction(dock.toggleViewAction())
        run_menu = menu.addMenu("&Run")
        for name in ("run", "cancel", "cancel_all", "compare", "delete_result", "undo_delete"):
            run_menu.addAction(self.actions[name])
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self.actions["shortcuts"])
        help_menu.addAction(self.actions["about"])

        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("toolbar_main")
        for name in ("open", "run", "cancel", "zoom_in", "zoom_out", "fit", "actual", "compare"):
            toolbar.addAction(self.actions[name])
        toolbar.addSeparator()
        toolbar.addWidget(QLabel(" Device: "))
        toolbar.addWidget(self.device_combo)

    def _update_actions(self) -> None:
        running = bool(self.jobs)
        enabled = {
            "needs_image": self.current is not None and self.model_info is not None,
            "needs_result": self.results.current_result() is not None,
            "needs_two_results": len(self.results.selected_results()) == 2,
            "job_running": running,
            "idle": not running,
        }
        for group, actions in self.action_groups.items():
            for act in actions:
                act.setEnabled(enabled[group])
        self.run_button.setEnabled(enabled["needs_image"])
        reason = self.run_blocked_reason()
        run_tip = "Queue an explanation of the target class for the current image (Ctrl+R)"
        if reason:
            run_tip = f"Run is not available: {reason}"
        elif self.batch_running:
            run_tip += ". A batch is running: the job waits until it ends"
        self.run_button.setToolTip(run_tip)
        self.actions["run"].setToolTip(run_tip)
        self.centre.setCurrentWidget(self.canvas if self.current is not None else self.empty_state)
        self.jobs_panel.set_running(running)
        self.device_combo.setEnabled(not running)

    def run_blocked_reason(self) -> str:
        """Why Run is disabled, in words; ``""`` when it can run."""
        if self.model_info is None:
            return "the model is still loading (or could not be loaded: File → Load model)"
        if self.current is None:
            return "open an image first (File → Open image, or drop one on the window)"
        return ""

    def _build_empty_state(self) -> QWidget:
        """What the centre shows before any image is open: a hint, a drop target and two buttons."""
        page = QWidget()
        page.setAcceptDrops(False)  # drops go to the window
        hint = QLabel("<h2>No image yet</h2><p>Drop photos here, open one, or try a sample.</p>")
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        open_button = QPushButton("Open image…")
        open_button.clicked.connect(self.open_dialog)
        samples = engine.sample_images()
        sample_button = QPushButton(f"Open sample ({samples[0].name})" if samples else "Open sample")
        sample_button.setEnabled(bool(samples))
        sample_button.clicked.connect(lambda: self.open_paths(samples[:1]))
        self.sample_button = sample_button
        layout = QVBoxLayout(page)
        layout.addStretch(1)
        layout.addWidget(hint)
        for button in (open_button, sample_button):
            layout.addWidget(button, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(1)
        return page

    # ------------------------------------------------------------------ images
    def open_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open images", self._last_folder(), IMAGE_FILTER)
        self.open_paths([Path(p) for p in paths])

    def open_paths(self, paths) -> None:
        """Open image files (in the worker; each appears when decoded, a bad one gives a dialog)."""
        for path in paths:
            path = Path(path)
            self.settings.setValue("last_folder", str(path.parent))
            self.worker.submit_load_image(path, next_id())
            self.statusBar().showMessage(f"Opening {path.name}…", 3000)

    def _on_image_loaded(self, image: ImageRecord) -> None:
        self.statusBar().clearMessage()
        same = next((i for i, open_image in enumerate(self.images) if open_image.path == image.path
                     and open_image.sha256 == image.sha256 and image.path is not None), None)  # fmt: skip
        if same is not None:  # the same file, unchanged: show the open one (with its results)
            self.image_list.setCurrentRow(same)
            self.statusBar().showMessage(f"{image.name} is already open.", 5000)
            self.image_opened.emit(self.images[same])
            return
        self.images.append(image)
        item = QListWidgetItem(_thumbnail(image.pixels), image.name)
        item.setToolTip(str(image.path))
        self.image_list.addItem(item)
        self._remember_recent(image.path)
        self.image_list.setCurrentRow(len(self.images) - 1)
        self.image_opened.emit(image)

    def _on_image_failed(self, path: str, message: str) -> None:
        self.show_error("Could not open the image", message)

    def _on_image_row(self, row: int) -> None:
        self.set_current(self.images[row] if 0 <= row < len(self.images) else None)

    def set_current(self, image: ImageRecord | None) -> None:
        self.current = image
        self.layers[PHOTO].set_data(image.pixels if image else None, display=image.display if image else None)
        if image is None:
            self.predictions.show_predictions(None)
        elif self.model_info is not None and image.model_generation == self.model_info.generation:
            self.predictions.show_predictions(image.predictions, _crop_note(image), probabilities=image.probabilities)
        else:
            self.predictions.show_predictions(None, "Predicting…")
            self.worker.submit_predict(image.id, image.pixels)
        self.results.show_image(image)
        self._show_crop(image)
        self.setWindowTitle(f"FGVis Studio — {image.name}" if image else "FGVis Studio")
        self._update_actions()

    def _show_crop(self, image: ImageRecord | None) -> None:
        """Outline the model's input crop on the photo once the current model has looked at it."""
        known = (
            image is not None and self.model_info is not None and image.model_generation == self.model_info.generation
        )
        self.canvas.set_crop_outline(image.crop_box if known else None)

    def step_image(self, delta: int) -> None:
        if self.images:
            self.image_list.setCurrentRow((self.image_list.currentRow() + delta) % len(self.images))

    def _on_predictions(self, image_id: int, generation: int, predictions, crop_box, probabilities) -> None:
        image = self._image(image_id)
        if image is None or self.model_info is None or generation != self.model_info.generation:
            return
        image.predictions, image.crop_box, image.model_generation = predictions, crop_box, generation
        image.probabilities = probabilities
        if image is self.current:
            self.predictions.show_predictions(predictions, _crop_note(image), probabilities=probabilities)
            self._show_crop(image)
            self._update_actions()

    def _image(self, image_id: int) -> ImageRecord | None:
        return next((image for image in self.images if image.id == image_id), None)

    # ------------------------------------------------------------------ model and device
    def load_model_dialog(self) -> None:
        dialog = ModelDialog(self, self._last_folder("models"))
        dialog.accepted.connect(lambda: self._load_model(dialog.spec()))
        dialog.open()

    def use_builtin_model(self) -> None:
        self._load_model(ModelSpec())

    def _load_model(self, spec: ModelSpec) -> None:
        self.model_label.setText(f"Loading {spec.describe()}…")
        self.worker.submit_load_model(spec, self.device_combo.currentData())

    def _on_model_loaded(self, info: ModelInfo) -> None:
        changed = self.model_info is None or info.generation != self.model_info.generation
        self.model_info = info
        self.model_label.setText(f"{info.name} on {info.device}")
        self.model_label.setToolTip(f"weights SHA-256: {info.weights_sha256 or '—'}")
        if info.scripted:
            self.method.defense.setChecked(False)
            self.statusBar().showMessage("TorchScript model: the defense cannot filter it and is off.", 8000)
        if changed:
            self.predictions.set_labels(info.labels)
            if self.current is not None:
                self.set_current(self.current)
        self._update_actions()

    def _on_model_failed(self, message: str) -> None:
        info = self.model_info
        self.model_label.setText(f"{info.name} on {info.device}" if info else "No model")
        if info is not None:  # the model stays where it was: show that device again
            self.device_combo.blockSignals(True)
            self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(info.device)))
            self.device_combo.blockSignals(False)
        self.show_error("Could not use the model", message)

    def _on_device_chosen(self) -> None:
        device = self.device_combo.currentData()
        self.settings.setValue("device", device)
        if self.model_info is not None:
            self.worker.submit_set_device(device)

    # ------------------------------------------------------------------ jobs
    def run_jobs(self) -> list[JobSpec]:
        """Queue one job per game for the current image and target; returns them."""
        image, target = self.current, self.predictions.target()
        if image is None or self.model_info is None:
            return []
        if target is None:
            self.show_error("No target class", "Choose the class to explain in the Predictions panel.")
            return []
        try:
            config = self.method.config()
        except ConfigError as exc:
            self.show_error("Invalid method settings", str(exc))
            return []
        queued = []
        for game in self.method.games():
            job = JobSpec(
                next_id(), image.id, image.name, image.pixels, target, self.model_info.labels[target], game,
                self.method.defense.isChecked(), config, image_path=image.path, image_sha256=image.sha256,
            )  # fmt: skip
            self.jobs[job.id] = job
            self.jobs_panel.add(job)
            self.worker.submit_job(job)
            queued.append(job)
        self.docks["jobs"].raise_()
        self.stall_monitor.start()
        if self.batch_running:
            self.statusBar().showMessage("A batch is running: the job starts when it ends.", 8000)
        self._update_actions()
        return queued

    def cancel_job(self) -> None:
        """Stop the running job after its current step (its partial result is kept); with none running
        (e.g. the queue waits for a batch), drop the next queued job."""
        job_id = self.running_job if self.running_job is not None else next(iter(self.jobs), None)
        if job_id is not None:
            self.worker.cancel(job_id)

    def cancel_all(self) -> None:
        for job_id in list(self.jobs):
            self.worker.cancel(job_id)

    def _on_job_started(self, job_id: int) -> None:
        self.running_job = job_id
        self.last_progress = None
        self.jobs_panel.started(job_id)

    def _on_job_progress(self, report: JobProgress) -> None:
        self.last_progress = report
        self.jobs_panel.progress(report, colormap=self.layers[EVIDENCE].colormap)
        job = self.jobs.get(report.job_id)
        if job is None or self.current is None or job.image_id != self.current.id or report.preview is None:
            return
        # The live preview takes the viewer only while no result is selected: a result the user is
        # looking at stays on screen, and the preview goes on in the job's row.
        if self.current.crop_box is not None and self.results.current_result() is None:
            self.layers[EVIDENCE].set_data(report.preview, self.current.crop_box)
        self.statusBar().showMessage(
            f"{job.title()}: step {report.step}/{report.total}, p = {report.target_prob:.3f}, "
            f"mask mean {report.mask_mean:.3f}, ETA {report.eta_s:.0f} s"
        )

    def _on_job_finished(self, result: ResultRecord) -> None:
        # The queue's bookkeeping first: whatever happens while showing the result, the job is over.
        self._job_done(result.job.id, "cancelled (partial result)" if result.cancelled else "done", result.steps)
        image = self._image(result.job.image_id)
        if image is not None:
            image.results.append(result)
            if image is self.current:
                self.results.show_image(image, select=result)
                if not self.jobs:  # the Jobs tab stays in front while more of the queue runs
                    self.docks["results"].raise_()
        elif not self.jobs:
            self.docks["results"].raise_()
        warned = f" (warning: {'; '.join(result.warnings)})" if result.warnings else ""
        self.statusBar().showMessage(
            f"{result.title()}: {result.status}, p(e) = {result.prob_explanation:.3f}{warned}", 8000
        )
        self.schedule_autosave()
        self.result_added.emit(result)

    def _on_job_failed(self, job_id: int, message: str) -> None:
        cancelled = message.startswith("cancelled")
        job = self.jobs.get(job_id)
        if job is not None and self.current is not None and job.image_id == self.current.id:
            self._show_result(self.results.current_result())  # drop the live preview of the failed run
        self._job_done(job_id, "cancelled" if cancelled else f"failed: {message}")
        if not cancelled and not self._closing:
            self.show_error("The explanation failed", message)

    def _job_done(self, job_id: int, state: str, steps: int | None = None) -> None:
        self.jobs.pop(job_id, None)
        if self.running_job == job_id:
            self.running_job = None
        self.jobs_panel.finished(job_id, state, steps)
        if not self.jobs:
            if self.current is not None and self.current.results and not state.startswith("done"):
                self.docks["results"].raise_()  # the queue ended by cancel or failure: back to the results
            self.stall_monitor.stop()
            log.info("event loop longest stall during jobs: %.1f ms", self.stall_monitor.max_stall_ms)
        self._update_actions()

    # ------------------------------------------------------------------ results and viewer
    def _show_result(self, result: ResultRecord | None) -> None:
        if result is None:
            for name in (EXPLANATION, DELETION, CHANNEL_MASK, EVIDENCE):
                self.layers[name].set_data(None)
        else:
            box = result.crop_box
            self.layers[EXPLANATION].set_data(result.explanation_rgb, box)
            self.layers[DELETION].set_data(result.deletion_rgb, box)
            channel_mask = np.round(result.mask.transpose(1, 2, 0) * 255).astype(np.uint8)
            self.layers[CHANNEL_MASK].set_data(channel_mask, box)
            self.layers[EVIDENCE].set_data(result.evidence, box)
        self._update_actions()

    def _on_hover(self, x: float, y: float) -> None:
        image = self.current
        if image is None or x < 0 or y < 0:
            self.pixel_info.clear()
            return
        col, row = int(x), int(y)
        height, width = image.pixels.shape[:2]
        if not (0 <= col < width and 0 <= row < height):
            self.pixel_info.clear()
            return
        r, g, b = (int(v) for v in image.pixels[row, col])
        text = f"x {col}, y {row}   RGB ({r}, {g}, {b})"
        result = self.results.current_result()
        if result is not None and result.crop_box is not None:
            left, top, right, bottom = result.crop_box
            h, w = result.evidence.shape
            u, v = int((x - left) / (right - left) * w), int((y - top) / (bottom - top) * h)
            if 0 <= u < w and 0 <= v < h:
                m = result.mask[:, v, u]
                text += f"   mask ({m[0]:.2f}, {m[1]:.2f}, {m[2]:.2f})   evidence {result.evidence[v, u]:.3f}"
            else:
                text += "   outside the model's crop"
        self.pixel_info.setText(text)

    def delete_result(self) -> None:
        """Remove the selected results from their image; :meth:`undo_delete` brings them back, one deletion
        at a time, newest first. The others are renumbered (numbers are positions, as in the report)."""
        image = self.current
        chosen = self.results.selected_results() or [r for r in [self.results.current_result()] if r is not None]
        if image is None or not chosen:
            return
        removed = [(i, r) for i, r in enumerate(image.results) if any(r is c for c in chosen)]
        image.results[:] = [r for r in image.results if not any(r is c for c in chosen)]
        self._deleted.append((image, removed))
        self.actions["undo_delete"].setEnabled(True)
        first = removed[0][0]
        self.results.show_image(image, select=image.results[min(first, len(image.results) - 1)]
                                if image.results else None)  # fmt: skip
        numbers = ", ".join(f"#{i + 1}" for i, _ in removed)
        self.statusBar().showMessage(f"Deleted result {numbers}; Ctrl+Z brings it back.", 8000)
        self.schedule_autosave()

    def undo_delete(self) -> None:
        if not self._deleted:
            return
        image, removed = self._deleted.pop()
        self.actions["undo_delete"].setEnabled(bool(self._deleted))
        if not any(i is image for i in self.images):
            return
        for index, result in removed:
            image.results.insert(min(index, len(image.results)), result)
        if image is not self.current:
            self.image_list.setCurrentRow(next(i for i, im in enumerate(self.images) if im is image))
        self.results.show_image(image, select=removed[0][1])
        self.statusBar().showMessage(f"Restored {len(removed)} result(s).", 5000)
        self.schedule_autosave()

    def show_shortcuts(self) -> QDialog:
        """Help → Keyboard shortcuts: every action that has one."""
        rows = [(_plain(act.text()), ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText)
                                                 for k in act.shortcuts()))
                for act in self.actions.values() if act.shortcuts()]  # fmt: skip
        dialog = QDialog(self)
        dialog.setWindowTitle("Keyboard shortcuts")
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        table = QTableWidget(len(rows), 2)
        table.setHorizontalHeaderLabels(["Command", "Keys"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        for row, (command, keys) in enumerate(rows):
            table.setItem(row, 0, QTableWidgetItem(command))
            table.setItem(row, 1, QTableWidgetItem(keys))
        table.resizeColumnsToContents()
        table.horizontalHeader().setStretchLastSection(True)
        close = QPushButton("Close")
        close.clicked.connect(dialog.close)
        layout = QVBoxLayout(dialog)
        layout.addWidget(table)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignRight)
        dialog.resize(460, 560)
        dialog.show()
        self.shortcuts_dialog = dialog
        return dialog

    def compare_selected(self) -> None:
        selected = self.results.selected_results()
        if len(selected) != 2 or self.current is None:
            self.show_error("Compare", "Select exactly two results of this image (Ctrl+click) to compare them.")
            return
        window = CompareWindow(self.current, selected, self.layers[EVIDENCE], self)
        window.destroyed.connect(lambda *_: self._compare_windows.remove(window))
        self._compare_windows.append(window)
        window.show()

    # ------------------------------------------------------------------ export and reports
    def confirm(self, title: str, question: str) -> bool:
        """Ask yes/no (modal). Tests replace this to answer without a person."""
        answer = QMessageBox.question(self, title, question)
        return answer == QMessageBox.StandardButton.Yes

    def export_result_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export the result to", self._last_folder("results"))
        if folder:
            self._remember_folder("results", Path(folder))
            self.export_result(Path(folder))

    def export_result(self, folder: Path) -> None:
        """Write the selected result (masks, heat map, overlay as shown, explanation PNG, JSON) to ``folder``;
        the worker re-scores the exported PNG. Existing files are replaced only after asking."""
        result, image = self.results.current_result(), self.current
        if result is None or image is None:
            return
        stem = f"{_safe_stem(image.name)}_{result.target}_{result.game}_{result.id}"
        clashes = existing_files(folder, stem)
        if clashes and not self.confirm("Replace files?", f"{len(clashes)} file(s) of this export already exist in "
                                                           f"{folder}. Replace them?"):  # fmt: skip
            return
        evidence = self.layers[EVIDENCE]
        overlay = _to_rgb_array(self.canvas.render_image())
        self.worker.submit_export(result, folder, stem, overlay=overlay, colormap=evidence.colormap,
                                  scale=evidence.scale, overwrite=True)  # fmt: skip
        self.statusBar().showMessage(f"Exporting {stem}…", 3000)

    def _on_export_done(self, result: ResultRecord, paths: dict) -> None:
        self.last_export = paths
        self.actions["open_export_folder"].setEnabled(True)
        self.results.show_image(self.current, select=self.results.current_result())
        rescored = "" if result.prob_rescored is None else (
            f"; the exported explanation PNG re-scores {result.prob_rescored:.4f} "
            f"(p(e) {result.prob_explanation:.4f}, difference {result.prob_rescored - result.prob_explanation:+.4f})"
        )  # fmt: skip
        self.statusBar().showMessage(f"Exported {len(paths)} files to {paths['summary'].parent}{rescored}", 15000)
        self.schedule_autosave()

    def _on_export_failed(self, message: str) -> None:
        self.show_error("Export failed", message)

    def open_export_folder(self) -> bool:
        """Show the folder of the last export in the system's file manager."""
        if not self.last_export:
            return False
        return open_folder(next(iter(self.last_export.values())).parent)

    def export_report_dialog(self) -> None:
        if self.current is None:
            return
        default = str(Path(self._last_folder("results")) / f"{_safe_stem(self.current.name)}_report.pdf")
        path, chosen = QFileDialog.getSaveFileName(self, "Export the review report", default, REPORT_FILTER)
        if not path:
            return
        wanted = report_path(path, chosen)
        self._remember_folder("results", wanted.parent)
        # The dialog asked about replacing the name it returned, not one we added a suffix to.
        self.export_report(wanted, overwrite=wanted == Path(path))

    def export_report(self, path: Path, *, overwrite: bool = False) -> Path | None:
        """The current image's report with all its results: ``.pdf`` (Qt) or ``.html`` (self-contained)."""
        image = self.current
        if image is None:
            return None
        path = Path(path)
        if path.exists() and not overwrite and not self.confirm("Replace file?", f"{path} exists. Replace it?"):
            return None
        evidence = self.layers[EVIDENCE]
        html = image_report(image.name, image.results, photo=image.pixels, image_notes=image.notes,
                            app_version=__version__, colormap=evidence.colormap, scale=evidence.scale)  # fmt: skip
        try:
            if path.suffix.lower() == ".pdf":
                pages = write_pdf(html, path)
                note = f"{pages} page(s)"
            else:
                write_all_or_nothing({path: html.encode("utf-8")})
                note = f"{len(html) // 1024} KB"
        except ExportError as exc:
            self.show_error("Report not written", str(exc))
            return None
        self.statusBar().showMessage(f"Report written: {path} ({note})", 10000)
        return path

    # ------------------------------------------------------------------ sessions
    def layer_settings(self) -> dict:
        """Visibility and style of every layer, by name (sessions keep them)."""
        return {layer.name: {"visible": layer.visible, "opacity": layer.opacity, "blend": layer.blend.value,
                             "colormap": layer.colormap, "scale": layer.scale}
                for layer in self.layers}  # fmt: skip

    def apply_layer_settings(self, values: dict) -> None:
        """Restore :meth:`layer_settings` (older ones migrated by :func:`gui.settings.migrate_layer_style`);
        unknown layers and invalid values are ignored."""
        for layer in self.layers:
            for prop, value in migrate_layer_style(values.get(layer.name) or {}).items():
                if prop in ("visible", "opacity", "blend", "colormap", "scale"):
                    with contextlib.suppress(TypeError, ValueError):
                        setattr(layer, prop, value)

    def session_snapshot(self) -> Session:
        current = next((i for i, image in enumerate(self.images) if image is self.current), -1)
        selected = self.results.current_result()
        number = self.results.number(selected) if selected is not None else None
        view = {"current": current, "selected_result": number - 1 if number else -1,
                "method": self.method.settings(), "layers": self.layer_settings()}  # fmt: skip
        images = [SessionImage(image.name, str(image.path) if image.path else None, image.sha256, image.notes,
                               list(image.results)) for image in self.images]  # fmt: skip
        reviews = [ReviewNotes(review.results_dir, review.game, dict(review.notes))
                   for review in self.reviews.values() if review.notes]  # fmt: skip
        return Session(images, view, __version__, reviews)

    def save_session(self, path: Path) -> bool:
        try:
            save_session(path, self.session_snapshot())
        except FGVisError as exc:
            self.show_error("Session not saved", str(exc))
            return False
        self.session_path = Path(path)
        self._remember_folder("sessions", Path(path).parent)
        self.statusBar().showMessage(f"Session saved: {path}", 8000)
        return True

    def save_session_quick(self) -> None:
        if self.session_path is not None:
            self.save_session(self.session_path)
        else:
            self.save_session_dialog()

    def save_session_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save session", self._last_folder("sessions"), SESSION_FILTER)
        if path:
            self.save_session(Path(path) if path.endswith(".fgvis") else Path(path + ".fgvis"))

    def open_session_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", self._last_folder("sessions"), SESSION_FILTER)
        if path:
            self.open_session(Path(path))

    def open_session(self, path: Path) -> None:
        """Open a saved session (in the worker); its images join the open ones with their results and notes."""
        self.worker.submit_open_session(path)
        self._opening_session = Path(path)

    def _on_session_loaded(self, images: list, view: dict, problems: list, reviews: list) -> None:
        problems = list(problems)
        first = len(self.images)
        for image in images:
            self.images.append(image)
            item = QListWidgetItem(_thumbnail(image.pixels), image.name)
            item.setToolTip(str(image.path))
            self.image_list.addItem(item)
        if isinstance(view.get("method"), dict):
            self.method.apply_settings(view["method"])
        if isinstance(view.get("layers"), dict):
            self.apply_layer_settings(view["layers"])
        current = view.get("current", 0)
        if images:
            current = current if isinstance(current, int) and 0 <= current < len(images) else 0
            self.image_list.setCurrentRow(first + current)
            selected = view.get("selected_result", -1)
            results = images[current].results
            if isinstance(selected, int) and not isinstance(selected, bool) and 0 <= selected < len(results):
                self.results.select(results[selected])
        if self._opening_session is not None and self._opening_session != self.recovery_path():
            self.session_path = self._opening_session
        if images:
            self.docks["results"].raise_()
        for review in reviews:  # after the images: a review that cannot be shown never costs them
            try:
                problem = self._restore_review(review)
            except (FGVisError, OSError, ValueError, RuntimeError) as exc:
                problem = f"The dataset review of {review.results_dir} could not be reopened: {exc}"
            if problem:
                problems.append(problem)
        self.session_opened.emit(len(images), problems)
        if problems:
            self.show_error("Part of the session could not be checked",
                            "The results are shown, but:\n" + "\n".join(problems))  # fmt: skip

    def _on_session_failed(self, message: str) -> None:
        self.show_error("Could not open the session", message)

    # ------------------------------------------------------------------ autosave and recovery
    @staticmethod
    def recovery_path() -> Path:
        return app_home() / "recovery.fgvis"

    def schedule_autosave(self) -> None:
        """Save a recovery copy a moment after the last change (results, notes, exports)."""
        self.autosave_timer.start()

    def autosave(self):
        """Write the recovery file in a background thread; returns the future (tests wait on it)."""
        snapshot, path = self.session_snapshot(), self.recovery_path()
        self._owns_recovery = True

        def write() -> None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                save_session(path, snapshot)
            except (FGVisError, OSError) as exc:
                log.warning("autosave to %s failed: %s", path, exc)

        return self._autosaver.submit(write)

    def offer_recovery(self) -> bool:
        """After a crash the recovery file is still there: offer to reopen it. Returns whether one exists."""
        path = self.recovery_path()
        if not path.is_file():
            return False
        box = QMessageBox(QMessageBox.Icon.Question, "Recover the last session?",
                          "FGVis Studio did not close normally last time. Reopen the results it had autosaved?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)  # fmt: skip
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.buttonClicked.connect(lambda button: self._on_recovery_answer(box, button))
        box.open()
        self.recovery_box = box
        return True

    def _on_recovery_answer(self, box: QMessageBox, button) -> None:
        if box.standardButton(button) == QMessageBox.StandardButton.Yes:
            self._owns_recovery = True
            self.open_session(self.recovery_path())
        else:
            with contextlib.suppress(OSError):
                self.recovery_path().unlink()

    # ------------------------------------------------------------------ batch
    def open_batch_results_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open batch results", self._last_folder("batches"))
        if folder:
            self.open_batch_results(Path(folder))

    def open_batch_results(self, folder: Path, game: str = "preserve"):
        """The "Dataset review" window (:mod:`gui.dataset_view`) on a batch results folder (the one already
        open on it is brought forward); notes the session holds for it join the analysis's own."""
        from .dataset_view import DatasetReviewWindow

        key = _review_key(folder, game)
        window = self._review_windows.get(key)
        if window is not None:
            window.raise_()
            window.activateWindow()
            return window
        window = DatasetReviewWindow(self, app_version=__version__)
        window.failed.connect(lambda message: self.show_error("Dataset review", message))
        window.notes_changed.connect(self._on_review_notes)
        window.analysis_loaded.connect(lambda analysis, window=window: self._key_review_window(window, analysis))
        window.destroyed.connect(lambda _=None, window=window: self._forget_review_window(window))
        self._review_windows[key] = window
        window.show()
        held = self.reviews.get(key)
        window.open_folder(Path(folder), game, notes=held.notes if held else None)
        return window

    def _key_review_window(self, window, analysis) -> None:
        """A review window is known by the analysis it shows (its results folder and game), which may
        differ from the folder it was opened on (an analysis folder, a delete analysis, another folder
        opened in the window)."""
        self._forget_review_window(window)
        self._review_windows[_review_key(analysis.results_dir, analysis.game)] = window

    def _forget_review_window(self, window) -> None:
        for key in [key for key, known in self._review_windows.items() if known is window]:
            del self._review_windows[key]

    def _on_review_notes(self, review: ReviewNotes) -> None:
        """A dataset review's notes changed: the session keeps them (and autosaves)."""
        self.reviews[_review_key(review.results_dir, review.game)] = review
        self.schedule_autosave()

    def _restore_review(self, review: ReviewNotes) -> str | None:
        """A dataset review of an opened session: its notes join those held; its window opens when the
        results folder is there. Returns a problem to report, or ``None``."""
        from engine.analysis import find_analysis, join_notes

        key = _review_key(review.results_dir, review.game)
        held = self.reviews.get(key)
        if held is None:
            self.reviews[key] = review
        else:
            join_notes(held.notes, review.notes)
        if not review.notes:
            return None
        window = self._review_windows.get(key)
        if window is not None:
            window.merge_notes(review.notes)
            return None
        kept = f"its {len(review.notes)} cluster note(s) are kept in the session"
        if not Path(review.results_dir).is_dir():
            return f"The dataset review of {review.results_dir} cannot be shown (the folder is not there); {kept}"
        if find_analysis(Path(review.results_dir)) is None:
            # Opening a session never starts an analysis (nor writes into a folder without one).
            return (f"The dataset review of {review.results_dir} has no saved analysis there; {kept}: open the "
                    "folder with File → Open batch results to analyse it and see them")  # fmt: skip
        self.open_batch_results(Path(review.results_dir), review.game)
        return None

    def batch_dialog(self) -> BatchDialog | None:
        try:
            config = self.method.config()
        except ConfigError as exc:
            self.show_error("Invalid method settings", str(exc))
            return None
        dialog = BatchDialog(self, self.worker, config, self.method.defense.isChecked(), self._last_folder("batches"))
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.batch_started.connect(self._on_batch_started)
        dialog.show()
        return dialog

    def _on_batch_started(self, batch_id: int) -> None:
        """A batch holds the worker until the worker says it ended (the dialog may be closed by then):
        queued jobs say why they wait."""
        self._batches.add(batch_id)
        self._show_batch_state()

    def _on_batch_ended(self, batch_id: int, _details) -> None:
        self._batches.discard(batch_id)
        self._show_batch_state()

    def _show_batch_state(self) -> None:
        self.jobs_panel.set_waiting_reason("waiting for the batch to finish" if self.batch_running else "")
        self._update_actions()

    @property
    def batch_running(self) -> bool:
        return bool(self._batches)

    # ------------------------------------------------------------------ errors, settings, closing
    def show_error(self, title: str, message: str) -> None:
        """A readable, non-blocking message box; the log file gets the details."""
        log.error("%s: %s", title, message)
        text = message
        if self.log_file is not None:
            text += f"\n\nDetails are in the log file:\n{self.log_file}"
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_box = box
        box.finished.connect(lambda *_: setattr(self, "error_box", None) if self.error_box is box else None)
        box.open()
        self.error_shown.emit(title, message)

    def about(self) -> None:
        from . import __version__

        QMessageBox.about(
            self, "About FGVis Studio",
            f"FGVis Studio {__version__}\nFine-grained, defended visual explanations (Wagner et al., CVPR 2019)."
            f"\nLog file: {self.log_file}",
        )  # fmt: skip

    def _last_folder(self, kind: str = "images") -> str:
        """The folder a file dialog of ``kind`` opens in: where the user last chose one of that kind. Results
        (exports, reports, sessions, batches) never default to a photo's folder, which may be read-only
        (the bundled samples) but to the home folder."""
        key = "last_folder" if kind == "images" else f"folders/{kind}"
        folder = str(self.settings.value(key, "") or "")
        return folder if folder and Path(folder).is_dir() else str(Path.home())

    def _remember_folder(self, kind: str, folder: Path) -> None:
        self.settings.setValue("last_folder" if kind == "images" else f"folders/{kind}", str(folder))

    def _remember_recent(self, path: Path | None) -> None:
        if path is None:
            return
        recent = [p for p in read_json(self.settings, "recent_files", []) if p != str(path)]
        write_json(self.settings, "recent_files", [str(path), *recent][:MAX_RECENT])
        self._rebuild_recent_menu()

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        for entry in read_json(self.settings, "recent_files", []):
            self.recent_menu.addAction(entry, lambda p=entry: self.open_paths([Path(p)]))
        self.recent_menu.setEnabled(not self.recent_menu.isEmpty())

    def _restore_settings(self) -> None:
        settings = self.settings
        geometry, state = settings.value("window/geometry"), settings.value("window/state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 900)
        if not (isinstance(state, QByteArray) and self.restoreState(state)):
            self._default_dock_sizes()
        self.method.apply_settings(read_json(settings, "method", {}))
        evidence = read_json(settings, "layers/evidence", {})
        self.apply_layer_settings({EVIDENCE: {k: v for k, v in evidence.items() if k != "visible"}})
        device = settings.value("device")
        index = self.device_combo.findData(device) if device else -1
        if index < 0:
            index = 1 if self.device_combo.count() > 1 else 0  # the first GPU when there is one
        self.device_combo.blockSignals(True)
        self.device_combo.setCurrentIndex(index)
        self.device_combo.blockSignals(False)
        self._rebuild_recent_menu()

    def _default_dock_sizes(self) -> None:
        docks = self.docks
        # The Jobs/Results tabs grow with the screen: ~4 result rows at 768 px, ~8 at 1080 px.
        self.resizeDocks([docks["jobs"]], [max(190, self.height() // 4)], Qt.Orientation.Vertical)
        self.resizeDocks([docks["images"], docks["layers"]], [150, 420], Qt.Orientation.Vertical)
        self.resizeDocks([docks["images"], docks["predictions"]], [270, 330], Qt.Orientation.Horizontal)
        self.resizeDocks([docks["predictions"], docks["method"]], [300, 330], Qt.Orientation.Vertical)

    def save_settings(self) -> None:
        settings = self.settings
        settings.setValue("window/geometry", self.saveGeometry())
        settings.setValue("window/state", self.saveState())
        write_json(settings, "method", self.method.settings())
        layer = self.layers[EVIDENCE]
        write_json(settings, "layers/evidence", {
            "opacity": layer.opacity, "colormap": layer.colormap, "blend": layer.blend.value,
            "scale": layer.scale,
        })  # fmt: skip
        settings.setValue("device", self.device_combo.currentData())
        settings.sync()

    def closeEvent(self, event) -> None:
        """Cancel running work and wait for the worker thread to end (at most one optimisation step)."""
        self._closing = True
        self.save_settings()
        self.stall_monitor.stop()
        for window in list(self._compare_windows):
            window.close()
        for window in set(self._review_windows.values()):
            window.close()  # writes pending notes, stops a running analysis at its next step
        self.worker_thread.stop()
        self.autosave_timer.stop()
        self._autosaver.shutdown(wait=True)
        if self._owns_recovery:  # a clean exit: nothing of ours to recover next time
            with contextlib.suppress(OSError):
                self.recovery_path().unlink()
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


def _crop_note(image: ImageRecord) -> str:
    """The predictions' heading, saying how little of the photo the model sees when that is under half
    (a panorama, a tall strip): the explanation covers only the outlined crop."""
    if image.crop_box is None:
        return ""
    left, top, right, bottom = image.crop_box
    height, width = image.pixels.shape[:2]
    seen = max(0.0, min(right, width) - max(left, 0.0)) * max(0.0, min(bottom, height) - max(top, 0.0))
    share = seen / max(width * height, 1)
    if share >= 0.5:
        return ""
    return (
        f"Top-5 on the model's input crop, which holds only {share:.0%} of this image (outlined): the rest is not seen."
    )


def report_path(path: str | Path, chosen_filter: str = "") -> Path:
    """The report file the user meant: the name typed in the save dialog, with the suffix of the chosen
    filter added when it has neither ``.pdf`` nor ``.html`` (``my_review`` + "PDF report" -> ``my_review.pdf``)."""
    path = Path(path)
    if path.suffix.lower() in (".pdf", ".html", ".htm"):
        return path
    suffix = ".html" if chosen_filter == HTML_FILTER else ".pdf"
    return path.with_name(path.name + suffix)


def open_folder(folder: Path) -> bool:
    """Show ``folder`` in the system's file manager; False when there is none (e.g. offscreen)."""
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


def _plain(text: str) -> str:
    """A menu text without its ``&`` mnemonics and trailing ellipsis (``"&Open image…"`` -> ``"Open image"``)."""
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip("…")


def _tooltip(text: str, act: QAction) -> str:
    """The tooltip a toolbar shows: plain words and the first shortcut, e.g. ``"Zoom in (Ctrl++)"``."""
    keys = act.shortcuts()
    shortcut = keys[0].toString(QKeySequence.SequenceFormat.NativeText) if keys else ""
    return f"{_plain(text)} ({shortcut})" if shortcut else _plain(text)


def _safe_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem) or "image"


def _to_rgb_array(image) -> np.ndarray:
    """A QImage -> ``(h, w, 3)`` uint8 RGB copy."""
    from PySide6.QtGui import QImage

    converted = image.convertToFormat(QImage.Format.Format_RGB888)
    width, height, stride = converted.width(), converted.height(), converted.bytesPerLine()
    buffer = np.frombuffer(converted.constBits(), np.uint8, count=stride * height).reshape(height, stride)
    return buffer[:, : width * 3].reshape(height, width, 3).copy()


def _review_key(folder, game: str) -> tuple[str, str]:
    """Which dataset review: the results folder (absolute, as typed otherwise) and the game."""
    try:
        folder = Path(folder).resolve()
    except (OSError, RuntimeError, ValueError):  # ValueError: a NUL character in a hostile path
        folder = Path(folder)
    return str(folder), game


def _thumbnail(pixels: np.ndarray) -> QIcon:
    return QIcon(QPixmap.fromImage(thumbnail(pixels, 64)))
