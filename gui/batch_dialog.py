"""Batch…: explain every image of a folder through the worker, with overall progress that moves with
every optimisation step, cancel (also asked before closing a running batch), the list of files that
could not be explained, and "Open results folder". Same engine call as ``fgvis batch``."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from engine import FGVisConfig
from engine.results.batch import image_files

from .path_field import PathField
from .records import next_id

#: The overall bar counts items in steps of 1/SUBSTEPS, so that it moves while an item is optimised.
SUBSTEPS = 1000


class BatchDialog(QDialog):
    """Non-modal; talks to the worker passed in. ``batch_id`` is set while a batch runs.

    ``batch_started(int batch id)`` fires when a batch is handed to the worker (the main window tells
    queued jobs why they wait until the worker reports the batch's end)."""

    batch_started = Signal(int)

    def __init__(self, parent, worker, config: FGVisConfig, defense: bool, folder: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Batch")
        self.worker, self.config, self.defense = worker, config, defense
        self.batch_id: int | None = None
        self.summary = None
        self.input_dir = PathField(self, "Folder of images", folder)
        self.out_dir = PathField(self, "Folder for the results", folder)
        self.targets = QComboBox()
        self.targets.setEditable(True)
        self.targets.addItems(["top1", "top3"])
        self.targets.setToolTip('top1, top3, topK, or a comma-separated list of classes ("espresso, 504")')
        self.game = QComboBox()
        self.game.addItems(["preserve", "delete", "both"])
        self.overwrite = QCheckBox("Redo items that are already done (overwrite)")
        self.engine = QComboBox()
        self.engine.addItem("this machine", "local")
        self.engine.addItem("a Ray cluster", "ray")
        self.engine.setToolTip(
            "Where the batch runs: in this app, or on Ray (pip install -e '.[cluster]'): a local\n"
            "Ray instance, or the cluster at the address below; the results land in the same folder"
        )
        self.address = QLineEdit()
        self.address.setPlaceholderText("empty: a Ray instance on this machine; auto; HOST:PORT; ray://HOST:PORT")
        self.address.setToolTip("The Ray cluster's address (the head's, as 'ray start --head' prints it)")
        self.engine.currentIndexChanged.connect(lambda: self.address.setEnabled(self.engine.currentData() == "ray"))
        self.address.setEnabled(False)
        form = QFormLayout()
        form.addRow("Images in", self.input_dir)
        form.addRow("Results to", self.out_dir)
        form.addRow("Classes", self.targets)
        form.addRow("Game", self.game)
        form.addRow("Run on", self.engine)
        form.addRow("Ray address", self.address)
        form.addRow(self.overwrite)
        self.overall = QProgressBar()
        self.overall.setRange(0, SUBSTEPS)
        self.overall.setFormat("no batch yet")
        self.done_items, self.total_items = 0, 0
        self.item = QProgressBar()
        self.item.setFormat("step %v / %m")
        self.log = QListWidget()
        settings = f"{config.steps} steps, defense {'on' if defense else 'off'}"
        self.status = QLabel(
            f"Settings from the Method panel: {settings}. Finished items are skipped: a batch resumes."
        )
        self.status.setWordWrap(True)
        self.start_button = QPushButton("Start")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.open_button = QPushButton("Open results folder")
        self.open_button.setToolTip("Show the results folder (index.html lists every item) in the file manager")
        self.open_button.setEnabled(False)
        close = QPushButton("Close")
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        buttons.addWidget(self.open_button)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addWidget(self.overall)
        layout.addWidget(self.item)
        layout.addWidget(self.log, 1)
        layout.addLayout(buttons)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        close.clicked.connect(self.close)
        self.open_button.clicked.connect(self.open_results)
        worker.batch_progress.connect(self._on_progress)
        worker.batch_step.connect(self._on_step)
        worker.batch_finished.connect(self._on_finished)
        worker.batch_failed.connect(self._on_failed)
        self.resize(620, 480)

    def start(self) -> None:
        source, target = self.input_dir.path(), self.out_dir.path()
        if source is None or not source.is_dir():
            self.status.setText("Choose the folder of images to explain.")
            return
        if target is None:
            self.status.setText("Choose a folder for the results.")
            return
        count = len(image_files(source))
        if not count:
            self.status.setText(f"There are no images in {source}.")
            return
        games = ["preserve", "delete"] if self.game.currentText() == "both" else [self.game.currentText()]
        self.batch_id = next_id()
        self.summary = None
        self.log.clear()
        self.done_items, self.total_items = 0, count
        self._show_overall(0.0)
        self.item.setValue(0)
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText("Running…")
        self.worker.submit_batch(
            self.batch_id,
            source,
            target,
            targets=self.targets.currentText(),
            games=games,
            defense=self.defense,
            config=self.config,
            overwrite=self.overwrite.isChecked(),
            engine=self.engine.currentData(),
            address=self.address.text().strip() or None,
        )
        self.batch_started.emit(self.batch_id)

    def cancel(self) -> None:
        if self.batch_id is not None:
            self.worker.cancel(self.batch_id)
            self.status.setText("Cancelling after the current step…")

    def confirm_stop(self) -> bool:
        """Ask before a running batch is stopped by closing the dialog (tests replace this)."""
        answer = QMessageBox.question(
            self,
            "Stop the batch?",
            "A batch is running. Stop it after the current step? Finished items are kept; Start resumes later.",
        )
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event) -> None:
        if self.batch_id is not None:
            if not self.confirm_stop():
                event.ignore()
                return
            self.cancel()
        super().closeEvent(event)

    def open_results(self) -> bool:
        from .controllers.exports import open_folder

        folder = self.out_dir.path()
        return folder is not None and folder.is_dir() and open_folder(folder)

    def _show_overall(self, fraction: float) -> None:
        """``done_items`` plus ``fraction`` (0..1) of the running item, of ``total_items``."""
        total = max(self.total_items, 1)
        self.overall.setValue(round(SUBSTEPS * min((self.done_items + fraction) / total, 1.0)))
        self.overall.setFormat(f"{self.done_items} / {self.total_items} items done")

    def _on_progress(self, batch_id: int, report) -> None:
        if batch_id != self.batch_id:
            return
        self.done_items, self.total_items = report.done, report.total
        self._show_overall(0.0)
        self.log.addItem(f"{report.item}: {report.state}")
        self.log.scrollToBottom()

    def _on_step(self, batch_id: int, step: int, total: int) -> None:
        if batch_id == self.batch_id:
            self.item.setMaximum(total)
            self.item.setValue(step)
            self._show_overall(step / max(total, 1))

    def _on_finished(self, batch_id: int, summary) -> None:
        if batch_id != self.batch_id:
            return
        self.summary = summary
        for name, reason in summary.failures:
            self.log.addItem(f"could not explain {name}: {reason}")
        for warning in summary.warnings:
            self.log.addItem(f"warning: {warning}")
        ended = "Cancelled: finished items are kept; Start again to resume." if summary.cancelled else "Done."
        self.status.setText(
            f"{ended} {len(summary.written)} written, {len(summary.skipped)} already done, "
            f"{len(summary.failures)} failed. Index: {summary.index_files.get('html')}"
        )
        self._idle()

    def _on_failed(self, batch_id: int, message: str) -> None:
        if batch_id == self.batch_id:
            self.status.setText(f"The batch could not run: {message}")
            self._idle()

    def _idle(self) -> None:
        self.batch_id = None
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        folder = self.out_dir.path()
        self.open_button.setEnabled(folder is not None and folder.is_dir())
