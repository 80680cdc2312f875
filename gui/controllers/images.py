"""The open images: opening files (in the worker), the Images list, and what follows the image on screen
-- the photo layer, its predictions, the model's crop outline, its results and the window's title."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QFileDialog, QListWidget, QListWidgetItem

from ..canvas import Canvas, thumbnail
from ..layers import PHOTO, LayerStack
from ..predictions_panel import PredictionsPanel, crop_note
from ..records import ImageRecord, ModelInfo, next_id
from ..results_panel import ResultsPanel
from ..settings import last_folder, remember_folder
from ..worker import Worker
from ..workspace import Workspace
from . import Host

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp *.gif);;All files (*)"


class ImageBrowser(QObject):
    """Keeps ``image_list`` in step with the workspace's images and shows the current one.

    ``remember(path)`` is told of each newly opened file (File → Open recent).
    Signals ``opened(ImageRecord)``: a file was opened (or shown again: it was open already);
    ``predicted(ImageRecord)``: the model's predictions for the image on screen arrived.
    """

    opened = Signal(object)
    predicted = Signal(object)

    def __init__(
        self,
        workspace: Workspace,
        worker: Worker,
        host: Host,
        image_list: QListWidget,
        predictions: PredictionsPanel,
        results: ResultsPanel,
        layers: LayerStack,
        canvas: Canvas,
        remember: Callable[[Path | None], None],
    ) -> None:
        super().__init__(host)  # a child of the window: it goes when the window goes
        self.workspace, self.worker, self.host, self.image_list = workspace, worker, host, image_list
        self.predictions, self.results, self.layers, self.canvas = predictions, results, layers, canvas
        self.remember = remember
        worker.image_loaded.connect(self._on_loaded)
        worker.image_failed.connect(self._on_failed)
        worker.predictions_ready.connect(self._on_predictions)
        workspace.image_added.connect(self._on_added)
        workspace.current_changed.connect(self.show)
        workspace.model_changed.connect(self._on_model_changed)
        image_list.currentRowChanged.connect(self._on_row)

    def open_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self.host, "Open images", last_folder(self.host.settings), IMAGE_FILTER)
        self.open_paths([Path(p) for p in paths])

    def open_paths(self, paths) -> None:
        """Open image files (in the worker; each appears when decoded, a bad one gives a dialog)."""
        for path in map(Path, paths):
            remember_folder(self.host.settings, "images", path.parent)
            self.worker.submit_load_image(path, next_id())
            self.host.show_status(f"Opening {path.name}…", 3000)

    def step(self, delta: int) -> None:
        """Show the next (``+1``) or previous (``-1``) image, round the list."""
        if self.workspace.images:
            self.image_list.setCurrentRow((self.image_list.currentRow() + delta) % len(self.workspace.images))

    def select(self, image: ImageRecord) -> None:
        """Make an open image the current one (through the list, which drives the workspace)."""
        self.image_list.setCurrentRow(self.workspace.index(image))

    def show(self, image: ImageRecord | None) -> None:
        """The photo, its predictions (asked for when the model has not seen it), crop outline and results."""
        self.layers[PHOTO].set_data(image.pixels if image else None, display=image.display if image else None)
        if image is None:
            self.predictions.show_predictions(None)
        elif self.workspace.knows_predictions(image):
            self.predictions.show_predictions(image.predictions, crop_note(image), probabilities=image.probabilities)
        else:
            self.predictions.show_predictions(None, "Predicting…")
            self.worker.submit_predict(image.id, image.pixels)
        self.results.show_image(image)
        self._show_crop(image)
        self.host.setWindowTitle(f"FGVis Studio — {image.name}" if image else "FGVis Studio")

    def _on_loaded(self, image: ImageRecord) -> None:
        self.host.show_status("")
        shown = self.workspace.add_image(image)
        if shown is not image:  # the same file, unchanged: show the open one (with its results)
            self.host.show_status(f"{image.name} is already open.", 5000)
        else:
            self.remember(image.path)
        self.select(shown)
        self.opened.emit(shown)

    def _on_added(self, image: ImageRecord) -> None:
        item = QListWidgetItem(QIcon(QPixmap.fromImage(thumbnail(image.pixels, 64))), image.name)
        item.setToolTip(str(image.path))
        self.image_list.addItem(item)

    def _on_failed(self, path: str, message: str) -> None:
        self.host.show_error("Could not open the image", message)

    def _on_row(self, row: int) -> None:
        images = self.workspace.images
        self.workspace.set_current(images[row] if 0 <= row < len(images) else None)

    def _show_crop(self, image: ImageRecord | None) -> None:
        """Outline the model's input crop on the photo once the current model has looked at it."""
        self.canvas.set_crop_outline(image.crop_box if self.workspace.knows_predictions(image) else None)

    def _on_predictions(self, image_id: int, generation: int, predictions, crop_box, probabilities) -> None:
        image, info = self.workspace.image(image_id), self.workspace.model_info
        if image is None or info is None or generation != info.generation:
            return
        image.predictions, image.crop_box, image.model_generation = predictions, crop_box, generation
        image.probabilities = probabilities
        if image is self.workspace.current:
            self.predictions.show_predictions(predictions, crop_note(image), probabilities=probabilities)
            self._show_crop(image)
            self.predicted.emit(image)

    def _on_model_changed(self, info: ModelInfo, new: bool) -> None:
        if new:
            self.predictions.set_labels(info.labels)
            if self.workspace.current is not None:
                self.show(self.workspace.current)
