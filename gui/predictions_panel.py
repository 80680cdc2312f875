"""Top-5 predictions of the current image and the choice of the class to explain (click a prediction
or type part of any class name)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCompleter,
    QHeaderView,
    QLabel,
    QLineEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from engine import Prediction


class PredictionsPanel(QWidget):
    """``target_changed(int)`` fires when the user picks a class; ``target()`` is the chosen index or
    ``None`` (no model labels yet)."""

    target_changed = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.labels: list[str] = []
        self._target: int | None = None
        self._probabilities = None  # (num_classes,) on the current photo, or None
        self._note = ""
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["class", "probability"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        rows = self.table.verticalHeader().defaultSectionSize()
        header = self.table.horizontalHeader().sizeHint().height()
        self.table.setMinimumHeight(header + 5 * rows + 2 * self.table.frameWidth() + 2)  # all of the top-5
        self.status = QLabel("Open an image to see what the model predicts.")
        self.status.setWordWrap(True)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Explain another class: type part of its name…")
        self.search.setClearButtonEnabled(True)
        self.target_label = QLabel("Target: —")
        self.target_label.setObjectName("target_label")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.status)
        layout.addWidget(self.table)
        layout.addWidget(self.search)
        layout.addWidget(self.target_label)
        self.table.itemSelectionChanged.connect(self._on_row_selected)
        self.search.returnPressed.connect(self._on_search_entered)

    def set_labels(self, labels: list[str]) -> None:
        self.labels = list(labels)
        entries = [f"{index}: {label}" for index, label in enumerate(self.labels)]
        completer = QCompleter(entries, self)
        completer.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        completer.setFilterMode(Qt.MatchFlag.MatchContains)
        completer.activated.connect(self._on_completion)
        self.search.setCompleter(completer)

    def show_predictions(self, predictions: list[Prediction] | None, note: str = "", probabilities=None) -> None:
        """Fill the table with the top-5 and select the top-1 as target. ``probabilities``
        (``(num_classes,)``, every class on the photo) lets a typed class show its probability too."""
        self._probabilities = probabilities
        self.table.blockSignals(True)
        self.table.setRowCount(0)
        for prediction in predictions or []:
            row = self.table.rowCount()
            self.table.insertRow(row)
            name = QTableWidgetItem(f"{prediction.label}  ({prediction.index})")
            name.setData(Qt.ItemDataRole.UserRole, prediction.index)
            self.table.setItem(row, 0, name)
            probability = QTableWidgetItem(f"{prediction.probability:.3f}")
            probability.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.table.setItem(row, 1, probability)
        self.table.blockSignals(False)
        self._note = note or ("Top-5 on the model's input crop." if predictions else "No image.")
        self.status.setText(self._note)
        if predictions:
            self.set_target(predictions[0].index)
        elif self._target is not None:
            self.set_target(self._target)  # the probability on the previous photo no longer applies

    def target(self) -> int | None:
        return self._target

    def set_target(self, index: int) -> None:
        """Choose class ``index``; out-of-range indices are ignored."""
        if not 0 <= index < len(self.labels):
            return
        self._target = index
        self.status.setText(self._note)  # a "matches N classes" hint is answered
        on_photo = ""
        probabilities = self._probabilities
        if probabilities is not None and index < len(probabilities):
            rank = int((probabilities > probabilities[index]).sum()) + 1
            on_photo = f": p = {float(probabilities[index]):.3g} on this photo (rank {rank})"
        self.target_label.setText(f"Target: <b>{self.labels[index]}</b> (class {index}){on_photo}")
        self.table.blockSignals(True)
        self.table.clearSelection()
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) == index:
                self.table.selectRow(row)
        self.table.blockSignals(False)
        self.target_changed.emit(index)

    def _on_row_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.set_target(self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole))

    def _on_completion(self, text: str) -> None:
        self.set_target(int(text.split(":", 1)[0]))
        self.search.clear()

    def _on_search_entered(self) -> None:
        text = self.search.text().strip().lower()
        if not text:
            return
        if ":" in text and text.split(":", 1)[0].isdigit():
            self._on_completion(text)
            return
        matches = [i for i, label in enumerate(self.labels) if text in label.lower()]
        exact = [i for i in matches if self.labels[i].lower() == text]
        chosen = exact or matches
        if len(chosen) == 1 or (text.isdigit() and 0 <= int(text) < len(self.labels)):
            self.set_target(chosen[0] if len(chosen) == 1 else int(text))
            self.search.clear()
        else:
            self.status.setText(
                f"No class contains “{text}”." if not chosen else f"“{text}” matches {len(chosen)} classes: pick one."
            )


def crop_note(image) -> str:
    """The predictions' heading for ``image`` (a :class:`gui.records.ImageRecord`), saying how little of
    the photo the model sees when that is under half (a panorama, a tall strip): the explanation covers
    only the outlined crop. ``""`` otherwise, and before the model has looked at it."""
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
