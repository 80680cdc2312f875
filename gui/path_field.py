"""A line edit with a Browse… button that picks a file or a folder (used by the model and batch dialogs)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget


class PathField(QWidget):
    """``file_filter`` ``None`` picks a folder; otherwise an existing file matching the filter."""

    def __init__(self, parent: QWidget, title: str, folder: str = "", file_filter: str | None = None) -> None:
        super().__init__(parent)
        self.title, self.folder, self.filter = title, folder, file_filter
        self.edit = QLineEdit()
        browse = QPushButton("Browse…")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(browse)
        browse.clicked.connect(self._browse)

    def _browse(self) -> None:
        start = self.edit.text() or self.folder
        if self.filter is None:
            path = QFileDialog.getExistingDirectory(self, self.title, start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, self.title, start, self.filter)
        if path:
            self.edit.setText(path)

    def path(self) -> Path | None:
        text = self.edit.text().strip()
        return Path(text) if text else None
