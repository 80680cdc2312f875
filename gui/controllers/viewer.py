"""What the layered viewer shows of the current image: the selected result's layers, a running job's live
preview while no result is selected, and the values under the mouse."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject
from PySide6.QtWidgets import QLabel

from ..layers import CHANNEL_MASK, DELETION, EVIDENCE, EXPLANATION, LayerStack
from ..records import JobProgress, JobSpec, ResultRecord, describe_pixel
from ..results_panel import ResultsPanel
from ..workspace import Workspace


class ResultViewer(QObject):
    """Fills the result layers of ``layers`` and the ``pixel_info`` label."""

    def __init__(
        self, workspace: Workspace, layers: LayerStack, results: ResultsPanel, pixel_info: QLabel, parent: QObject
    ) -> None:
        super().__init__(parent)
        self.workspace, self.layers, self.results, self.pixel_info = workspace, layers, results, pixel_info

    def show_result(self, result: ResultRecord | None) -> None:
        """The result's explanation, deletion view, per-channel mask and evidence; ``None`` clears them."""
        if result is None:
            for name in (EXPLANATION, DELETION, CHANNEL_MASK, EVIDENCE):
                self.layers[name].set_data(None)
            return
        box = result.crop_box
        self.layers[EXPLANATION].set_data(result.explanation_rgb, box)
        self.layers[DELETION].set_data(result.deletion_rgb, box)
        self.layers[CHANNEL_MASK].set_data(np.round(result.mask.transpose(1, 2, 0) * 255).astype(np.uint8), box)
        self.layers[EVIDENCE].set_data(result.evidence, box)

    def show_preview(self, report: JobProgress, job: JobSpec) -> None:
        """A running job's evidence so far, on the evidence layer, while no result of its image is selected
        (a result the user is looking at stays on screen; the preview goes on in the job's row)."""
        image = self.workspace.current
        if image is None or job.image_id != image.id or report.preview is None or image.crop_box is None:
            return
        if self.results.current_result() is None:
            self.layers[EVIDENCE].set_data(report.preview, image.crop_box)

    def drop_preview(self, job: JobSpec) -> None:
        """A job ended without a result: its preview gives way to the selected result (or nothing)."""
        current = self.workspace.current
        if current is not None and job.image_id == current.id:
            self.show_result(self.results.current_result())

    def hover(self, x: float, y: float) -> None:
        image = self.workspace.current
        self.pixel_info.setText(describe_pixel(image, self.results.current_result(), x, y) if image else "")
