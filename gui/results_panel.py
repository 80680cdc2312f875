"""Results of the current image: the test that makes FGVis explanations special -- the target's
probability on the original against the explanation, and the model's top-1 on the explanation."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .records import ResultRecord

COLUMNS = ("#", "class", "game", "defense", "p(x)", "p(e)", "top-1 on e", "mask mean", "steps", "time (s)", "status")


class ResultsPanel(QWidget):
    """``result_selected(ResultRecord | None)`` when the current row changes; ``selected_results()``
    lists every selected row (two of them can be compared)."""

    result_selected = Signal(object)
    notes_edited = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notes = QPlainTextEdit()
        self.notes.setPlaceholderText("Reviewer notes on this result")
        self.notes.setMaximumHeight(48)
        self.image_notes = QPlainTextEdit()
        self.image_notes.setPlaceholderText("Reviewer notes on this image")
        self.image_notes.setMaximumHeight(48)
        self.table.setMinimumHeight(40)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.details)
        notes_row = QHBoxLayout()
        notes_row.addWidget(self.notes)
        notes_row.addWidget(self.image_notes)
        layout.addLayout(notes_row)
        self._results: list[ResultRecord] = []
        self._image = None
        self.table.currentCellChanged.connect(lambda *_: self._on_current_changed())
        self.notes.textChanged.connect(self._on_notes_changed)
        self.image_notes.textChanged.connect(self._on_image_notes_changed)
        self.notes.setEnabled(False)
        self.image_notes.setEnabled(False)

    def show_image(self, image, select: ResultRecord | None = None) -> None:
        """Show ``image``'s results (an :class:`~gui.records.ImageRecord` or ``None``) and its notes."""
        self._image = image
        self.image_notes.blockSignals(True)
        self.image_notes.setPlainText(image.notes if image is not None else "")
        self.image_notes.blockSignals(False)
        self.image_notes.setEnabled(image is not None)
        self.show_results(image.results if image is not None else [], select)

    def show_results(self, results: list[ResultRecord], select: ResultRecord | None = None) -> None:
        self._results = list(results)
        self.table.blockSignals(True)
        self.table.setRowCount(len(results))
        for row, result in enumerate(results):
            for column, text in enumerate(_cells(result)):
                item = QTableWidgetItem(text)
                if column >= 4 and column != 6 and column != 10:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if result.cancelled or not result.goal_met or not result.survives_8bit:
                    item.setForeground(Qt.GlobalColor.darkRed)
                self.table.setItem(row, column, item)
        self.table.blockSignals(False)
        if select is not None and select in self._results:
            self.table.selectRow(self._results.index(select))
        elif results:
            self.table.selectRow(len(results) - 1)
        self._on_current_changed()

    def current_result(self) -> ResultRecord | None:
        row = self.table.currentRow()
        return self._results[row] if 0 <= row < len(self._results) else None

    def selected_results(self) -> list[ResultRecord]:
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [self._results[row] for row in rows if row < len(self._results)]

    def _on_current_changed(self) -> None:
        result = self.current_result()
        self.notes.blockSignals(True)
        self.notes.setPlainText(result.notes if result else "")
        self.notes.blockSignals(False)
        self.notes.setEnabled(result is not None)
        self.details.setText(_details(result) if result else "No result for this image yet: choose a class and Run.")
        self.result_selected.emit(result)

    def _on_notes_changed(self) -> None:
        result = self.current_result()
        if result is not None:
            result.notes = self.notes.toPlainText()
            self.notes_edited.emit()

    def _on_image_notes_changed(self) -> None:
        if self._image is not None:
            self._image.notes = self.image_notes.toPlainText()
            self.notes_edited.emit()


def _cells(result: ResultRecord) -> list[str]:
    job = result  # the record carries the job's class, game, defense and settings
    return [
        str(result.id), job.target_label, job.game, "on" if job.defense else "off",
        f"{result.prob_original:.3f}", f"{result.prob_explanation:.3f}", result.top1_explanation_label,
        f"{result.mask_mean:.3f}", str(result.steps), f"{result.wall_time_s:.1f}", result.status,
    ]  # fmt: skip


def _details(result: ResultRecord) -> str:
    job = result  # the record carries the job's class, game, defense and settings
    kept = result.top1_explanation == job.target
    label, top1 = html.escape(job.target_label), html.escape(result.top1_explanation_label)
    verdict = (
        f"The explanation alone scores <b>{result.prob_explanation:.3f}</b> for “{label}” "
        f"(the photo: {result.prob_original:.3f}); the model's top-1 on it is “{top1}”"
        f"{' — the decision is kept' if kept else ''}."
    )
    if job.game == "delete":
        verdict = (
            f"With the evidence deleted the model gives “{label}” <b>{result.prob_explanation:.3f}</b> "
            f"(the photo: {result.prob_original:.3f}); its top-1 becomes “{top1}”."
        )
    policy = "automatic" if job.config.lambda_ is None else "fixed"
    partial = " <b>Cancelled: partial result.</b>" if result.cancelled else ""
    if result.prob_rescored is not None:
        partial += f" As an 8-bit PNG file it re-scores {result.prob_rescored:.3f}."
        if not result.survives_8bit:
            partial += " <b>It does not survive 8-bit quantisation: do not rely on it.</b>"
    warnings = "".join(f"<br><b>Warning:</b> {html.escape(warning)}" for warning in result.warnings)
    return (
        f"{verdict}{partial}<br>Mask mean {result.mask_mean:.3f}, λ {result.lambda_:.3g} ({policy}), "
        f"{result.steps} steps in {result.wall_time_s:.1f} s on {result.device}, reference {job.config.reference}."
        f"{warnings}"
    )
