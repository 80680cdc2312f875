"""What the viewer's place shows before any image is open: a hint, a drop target and two buttons."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget


class EmptyState(QWidget):
    """Signals ``open_requested()`` (Open image…) and ``sample_requested(Path)`` (the first of ``samples``)."""

    open_requested = Signal()
    sample_requested = Signal(object)

    def __init__(self, samples: list[Path], parent=None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(False)  # drops go to the window
        hint = QLabel("<h2>No image yet</h2><p>Drop photos here, open one, or try a sample.</p>")
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        open_button = QPushButton("Open image…")
        open_button.clicked.connect(self.open_requested)
        self.sample_button = QPushButton(f"Open sample ({samples[0].name})" if samples else "Open sample")
        self.sample_button.setEnabled(bool(samples))
        self.sample_button.clicked.connect(lambda: self.sample_requested.emit(samples[0]))
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addWidget(hint)
        for button in (open_button, self.sample_button):
            layout.addWidget(button, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(1)
