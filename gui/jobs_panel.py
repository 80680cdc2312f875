"""The job queue as the user sees it: one row per job with state, a live preview of its evidence, a
progress bar, step, ETA and the current target probability; the whole queue's ETA; cancel the running
job or everything."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine.colormaps import apply_colormap, display_range

from .canvas import to_qimage
from .records import JobProgress, JobSpec

PREVIEW_SIZE = 32

COLUMNS = ("job", "state", "progress", "p(target)", "ETA")


class JobsPanel(QWidget):
    """Shows jobs; emits ``cancel_requested()`` / ``cancel_all_requested()``."""

    cancel_requested = Signal()
    cancel_all_requested = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.tree.setIconSize(QSize(PREVIEW_SIZE, PREVIEW_SIZE))
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running job after its current step; its partial result is kept (Esc)")
        self.cancel_all_button = QPushButton("Cancel all")
        self.cancel_all_button.setToolTip("Stop the running job and drop the queued ones (Shift+Esc)")
        self.clear_button = QPushButton("Clear finished")
        self.clear_button.setToolTip("Remove finished, failed and cancelled jobs from this list")
        self.queue_label = QLabel()
        buttons = QHBoxLayout()
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.cancel_all_button)
        buttons.addWidget(self.queue_label, 1)
        buttons.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.tree)
        layout.addLayout(buttons)
        self.cancel_button.clicked.connect(self.cancel_requested)
        self.cancel_all_button.clicked.connect(self.cancel_all_requested)
        self.clear_button.clicked.connect(self.clear_finished)
        self._items: dict[int, QTreeWidgetItem] = {}
        self._bars: dict[int, QProgressBar] = {}
        self._done: set[int] = set()
        self._steps: dict[int, int] = {}  # step budget of each job not yet finished
        self._step_time_s: float | None = None  # seconds per step of the latest report
        self._waiting_reason = ""
        self.set_running(False)

    def set_running(self, running: bool) -> None:
        self.cancel_button.setEnabled(running)
        self.cancel_all_button.setEnabled(running)

    def add(self, job: JobSpec) -> None:
        item = QTreeWidgetItem([job.title(), self._queued_text(), "", "", ""])
        self.tree.addTopLevelItem(item)
        bar = QProgressBar()
        bar.setRange(0, job.config.steps)
        bar.setValue(0)
        bar.setFormat("%v / %m")
        self.tree.setItemWidget(item, 2, bar)
        self._items[job.id] = item
        self._bars[job.id] = bar
        self._steps[job.id] = job.config.steps
        self._update_queue_label()

    def set_waiting_reason(self, reason: str) -> None:
        """Why queued jobs do not start (e.g. a batch holds the model); ``""`` when nothing holds them."""
        self._waiting_reason = reason
        for job_id, item in self._items.items():
            if job_id not in self._done and item.text(1).startswith("queued"):
                self._set_state(job_id, self._queued_text())

    def started(self, job_id: int) -> None:
        self._set_state(job_id, "running")
        if job_id in self._items:
            self.tree.scrollToItem(self._items[job_id])  # the running job is in view in a short panel

    def progress(self, report: JobProgress, colormap: str = "inferno") -> None:
        item = self._items.get(report.job_id)
        if item is None:
            return
        self._bars[report.job_id].setValue(report.step)
        item.setText(3, f"{report.target_prob:.3f}")
        item.setText(4, f"{report.eta_s:.0f} s" if report.step < report.total else "")
        if report.preview is not None:
            item.setIcon(0, _preview_icon(report.preview, colormap))
        if report.step > 0:
            self._step_time_s = report.elapsed_s / report.step
        self._steps[report.job_id] = report.total - report.step
        self._update_queue_label()

    def finished(self, job_id: int, state: str, steps: int | None = None) -> None:
        self._set_state(job_id, state)
        self._done.add(job_id)
        self._steps.pop(job_id, None)
        bar = self._bars.get(job_id)
        if bar is not None and steps is not None:
            bar.setMaximum(max(bar.maximum(), steps))
            bar.setValue(steps if state != "done" else bar.maximum())
        if job_id in self._items:
            self._items[job_id].setText(4, "")
        self._update_queue_label()

    def queue_eta_s(self) -> float | None:
        """Seconds until the whole queue is done if every job uses its step budget (runs that converge
        stop earlier); ``None`` before the first step has been timed or when the queue is empty."""
        if not self._steps or self._step_time_s is None:
            return None
        return sum(self._steps.values()) * self._step_time_s

    def state(self, job_id: int) -> str:
        return self._items[job_id].text(1)

    def clear_finished(self) -> None:
        for job_id in list(self._done):
            item = self._items.pop(job_id, None)
            self._bars.pop(job_id, None)
            if item is not None:
                self.tree.takeTopLevelItem(self.tree.indexOfTopLevelItem(item))
        self._done.clear()

    def _queued_text(self) -> str:
        return f"queued: {self._waiting_reason}" if self._waiting_reason else "queued"

    def _update_queue_label(self) -> None:
        left, eta = len(self._steps), self.queue_eta_s()
        if not left:
            self.queue_label.setText("")
        elif eta is None:
            self.queue_label.setText(f"{left} job(s) in the queue")
        else:
            self.queue_label.setText(f"{left} job(s) in the queue, at most {_duration(eta)} left")

    def _set_state(self, job_id: int, state: str) -> None:
        item = self._items.get(job_id)
        if item is not None:
            item.setText(1, state)
            item.setToolTip(1, state)
            trouble = state.startswith(("failed", "cancel"))
            item.setForeground(1, Qt.GlobalColor.darkRed if trouble else Qt.GlobalColor.black)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _preview_icon(preview, colormap: str) -> QIcon:
    """The evidence preview ``(h, w)`` float in 0..1, coloured on the viewer's robust scale."""
    shown = display_range(preview)
    rgb = apply_colormap(preview, colormap, shown.low, shown.high)
    image = to_qimage(rgb).scaled(PREVIEW_SIZE, PREVIEW_SIZE, Qt.AspectRatioMode.KeepAspectRatio)
    return QIcon(QPixmap.fromImage(image))
