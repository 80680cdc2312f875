"""Two results side by side in linked canvases that zoom and pan together."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from .canvas import Canvas
from .layers import EVIDENCE, PHOTO, Layer, LayerStack
from .records import ImageRecord, ResultRecord


class CompareWindow(QWidget):
    """A top-level window: for each result the photo with its evidence heat map (same colormap and
    opacity as the main viewer's evidence layer)."""

    def __init__(self, image: ImageRecord, results: list[ResultRecord], evidence_style: Layer, parent=None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle(f"Compare — {image.name}")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.canvases: list[Canvas] = []
        row = QHBoxLayout(self)
        for result in results:
            stack = LayerStack([
                Layer(PHOTO, "rgb"),
                Layer(EVIDENCE, "scalar", opacity=evidence_style.opacity, colormap=evidence_style.colormap,
                      blend=evidence_style.blend, scale=evidence_style.scale),
            ])  # fmt: skip
            canvas = Canvas(stack)
            stack[PHOTO].set_data(image.pixels, display=image.display)
            stack[EVIDENCE].set_data(result.evidence, result.crop_box)
            column = QVBoxLayout()
            caption = QLabel(f"{result.title()}<br>p(x) {result.prob_original:.3f} → p(e) "
                             f"{result.prob_explanation:.3f}, mask mean {result.mask_mean:.3f}")  # fmt: skip
            column.addWidget(caption)
            column.addWidget(canvas, 1)
            row.addLayout(column)
            if self.canvases:
                self.canvases[0].link(canvas)
            self.canvases.append(canvas)
        self.resize(1100, 600)
