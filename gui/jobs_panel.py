"""The job queue as the user sees it: one row per job with state, a progress bar, step, ETA and the
current target probability; cancel the running job or everything."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .records import JobProgress, JobSpec

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
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running job after its current step; its partial result is kept (Esc)")
        self.cancel_all_button = QPushButton("Cancel all")
        self.clear_button = QPushButton("Clear finished")
        buttons = QHBoxLayout()
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.cancel_all_button)
        buttons.addStretch(1)
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
        self.set_running(False)

    def set_running(self, running: bool) -> None:
        self.cancel_button.setEnabled(running)
        self.cancel_all_button.setEnabled(running)

    def add(self, job: JobSpec) -> None:
        item = QTreeWidgetItem([job.title(), "queued", "", "", ""])
        self.tree.addTopLevelItem(item)
        bar = QProgressBar()
        bar.setRange(0, job.config.steps)
        bar.setValue(0)
        bar.setFormat("%v / %m")
        self.tree.setItemWidget(item, 2, bar)
        self._items[job.id] = item
        self._bars[job.id] = bar

    def started(self, job_id: int) -> None:
        self._set_state(job_id, "running")

    def progress(self, report: JobProgress) -> None:
        item = self._items.get(report.job_id)
        if item is None:
            return
        self._bars[report.job_id].setValue(report.step)
        item.setText(3, f"{report.target_prob:.3f}")
        item.setText(4, f"{report.eta_s:.0f} s" if report.step < report.total else "")

    def finished(self, job_id: int, state: str, steps: int | None = None) -> None:
        self._set_state(job_id, state)
        self._done.add(job_id)
        bar = self._bars.get(job_id)
        if bar is not None and steps is not None:
            bar.setMaximum(max(bar.maximum(), steps))
            bar.setValue(steps if state != "done" else bar.maximum())
        if job_id in self._items:
            self._items[job_id].setText(4, "")

    def state(self, job_id: int) -> str:
        return self._items[job_id].text(1)

    def clear_finished(self) -> None:
        for job_id in list(self._done):
            item = self._items.pop(job_id, None)
            self._bars.pop(job_id, None)
            if item is not None:
                self.tree.takeTopLevelItem(self.tree.indexOfTopLevelItem(item))
        self._done.clear()

    def _set_state(self, job_id: int, state: str) -> None:
        item = self._items.get(job_id)
        if item is not None:
            item.setText(1, state)
            item.setToolTip(1, state)
            trouble = state.startswith(("failed", "cancel"))
            item.setForeground(1, Qt.GlobalColor.darkRed if trouble else Qt.GlobalColor.black)
