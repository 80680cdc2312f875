"""Results of the current image: the test that makes FGVis explanations special -- the target's
probability on the original against the explanation, and the model's top-1 on the explanation."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .records import ResultRecord

MIN_ROW_HEIGHT = 22
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
        # The table gets the dock's whole height; details and notes sit beside it and scroll.
        self.table.setMinimumHeight(self.table.horizontalHeader().sizeHint().height() + 3 * MIN_ROW_HEIGHT)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(4, 0, 0, 0)
        side_layout.addWidget(self.details)
        side_layout.addWidget(self.notes)
        side_layout.addWidget(self.image_notes)
        side_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(side)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(scroll)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.splitter)
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
        """Fill the table (``#`` is the result's number on its image, as in the report) and select
        ``select`` (by identity), else the last result; the selected row is scrolled into view."""
        self._results = list(results)
        self.table.blockSignals(True)
        self.table.setRowCount(len(results))
        for row, result in enumerate(results):
            for column, text in enumerate(_cells(row + 1, result)):
                item = QTableWidgetItem(text)
                if column >= 4 and column != 6 and column != 10:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if _needs_attention(result):
                    item.setForeground(Qt.GlobalColor.darkRed)
                if column == 10 and result.warnings:
                    item.setToolTip("\n".join(result.warnings))
                self.table.setItem(row, column, item)
        self.table.blockSignals(False)
        rows = [i for i, r in enumerate(self._results) if r is select] if select is not None else []
        self.table.clearSelection()  # one row selected: an earlier Ctrl+click selection does not pile up
        if rows or results:
            row = rows[0] if rows else len(results) - 1
            self.table.selectRow(row)
            self.table.scrollToItem(self.table.item(row, 0))
        self._on_current_changed()

    def number(self, result: ResultRecord) -> int | None:
        """``result``'s number in the table (1-based), ``None`` if it is not shown."""
        return next((i + 1 for i, r in enumerate(self._results) if r is result), None)

    def select(self, result: ResultRecord) -> None:
        number = self.number(result)
        if number is not None:
            self.table.clearSelection()
            self.table.selectRow(number - 1)
            self.table.scrollToItem(self.table.item(number - 1, 0))

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


def _needs_attention(result: ResultRecord) -> bool:
    return result.cancelled or not result.goal_met or not result.survives_8bit or bool(result.warnings)


def _cells(number: int, result: ResultRecord) -> list[str]:
    status = f"⚠ {result.status}" if result.warnings else result.status
    return [
        str(number), result.target_label, result.game, "on" if result.defense else "off",
        _probability(result.prob_original), _probability(result.prob_explanation), result.top1_explanation_label,
        f"{result.mask_mean:.3f}", str(result.steps), f"{result.wall_time_s:.1f}", status,
    ]  # fmt: skip


def _probability(value: float) -> str:
    """Three decimals, or three significant digits below 0.001 (so 0.000185 does not read 0.000)."""
    return f"{value:.3f}" if value >= 0.001 or value == 0 else f"{value:.2e}"


def photo_top1(result: ResultRecord) -> tuple[int, str] | None:
    """The model's top-1 ``(class, name)`` on the photo, when the record has it."""
    if not result.top5_original:
        return None
    index, name, *_ = result.top5_original[0]
    return int(index), str(name)


def _details(result: ResultRecord) -> str:
    label, top1 = html.escape(result.target_label), html.escape(result.top1_explanation_label)
    photo = photo_top1(result)
    photo_chose_target = photo is None or photo[0] == result.target
    if result.game == "delete":
        verdict = (
            f"With the evidence deleted the model gives “{label}” <b>{result.prob_explanation:.3f}</b> "
            f"(the photo: {result.prob_original:.3f}); its top-1 becomes “{top1}”."
            " The heat map shows <b>1 - m</b>: what the mask removed."
        )
    else:
        if result.top1_explanation == result.target and photo_chose_target:
            decision = " — the decision is kept"
        elif photo_chose_target:
            decision = " — the decision is <b>not</b> kept"
        else:
            decision = (
                f", while on the photo it is “{html.escape(photo[1])}”: "
                "<b>the decision on the photo is another class</b>"
            )
        verdict = (
            f"The explanation alone scores <b>{result.prob_explanation:.3f}</b> for “{label}” "
            f"(the photo: {result.prob_original:.3f}); the model's top-1 on it is “{top1}”{decision}."
            " The heat map shows <b>m</b>: what the mask kept."
        )
    policy = "automatic" if result.config.lambda_ is None else "fixed"
    partial = " <b>Cancelled: partial result.</b>" if result.cancelled else ""
    if result.prob_rescored is not None:
        partial += f" As an 8-bit PNG file it re-scores {result.prob_rescored:.3f}."
        if not result.survives_8bit:
            partial += " <b>It does not survive 8-bit quantisation: do not rely on it.</b>"
    warnings = "".join(f"<br><b>⚠ Warning:</b> {html.escape(warning)}" for warning in result.warnings)
    return (
        f"{verdict}{partial}{warnings}<br>Mask mean {result.mask_mean:.3f}, λ {result.lambda_:.3g} ({policy}), "
        f"{result.steps} steps in {result.wall_time_s:.1f} s on {result.device}, "
        f"reference {_reference_text(result)}."
    )


def _reference_text(result) -> str:
    """The reference, its blur, and what it scores alone where the record knows it."""
    text = result.config.reference_text()
    if result.prob_reference is not None:
        text += f", p on it alone {result.prob_reference:.3f}"
    return text
