"""Two results side by side in linked canvases that zoom and pan together, each with its colour bar."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from .canvas import Canvas
from .layer_panel import ColorBar
from .layers import EVIDENCE, PHOTO, Layer, LayerStack
from .records import ImageRecord, ResultRecord


class CompareWindow(QWidget):
    """A top-level window: for each result the photo with its evidence heat map (same colormap and
    opacity as the main viewer's evidence layer) and a colour bar printing the range it is shown on: each
    map has its own robust range, so equal colours need not mean equal values."""

    def __init__(self, image: ImageRecord, results: list[ResultRecord], evidence_style: Layer, parent=None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle(f"Compare — {image.name}")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.canvases: list[Canvas] = []
        self.color_bars: list[ColorBar] = []
        row = QHBoxLayout(self)
        for result in results:
            stack = LayerStack(
                [
                    Layer(PHOTO, "rgb"),
                    Layer(
                        EVIDENCE,
                        "scalar",
                        opacity=evidence_style.opacity,
                        colormap=evidence_style.colormap,
                        blend=evidence_style.blend,
                        scale=evidence_style.scale,
                    ),
                ]
            )
            canvas = Canvas(stack)
            stack[PHOTO].set_data(image.pixels, display=image.display)
            stack[EVIDENCE].set_data(result.evidence, result.crop_box)
            column = QVBoxLayout()
            number = next((i + 1 for i, r in enumerate(image.results) if r is result), None)
            caption = QLabel(
                f"#{number} {result.title()}<br>p(x) {result.prob_original:.3f} → p(e) "
                f"{result.prob_explanation:.3f}, mask mean {result.mask_mean:.3f}"
            )
            bar = ColorBar()
            bar.show_scale(stack[EVIDENCE].colormap, stack[EVIDENCE].display_range())
            column.addWidget(caption)
            column.addWidget(canvas, 1)
            column.addWidget(bar)
            self.color_bars.append(bar)
            row.addLayout(column)
            if self.canvases:
                self.canvases[0].link(canvas)
            self.canvases.append(canvas)
        self.resize(1100, 600)
