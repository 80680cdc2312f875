"""The layered image canvas: a ``QGraphicsView`` with one pixmap item per :class:`~gui.layers.Layer`,
zoom (wheel, keys), pan (drag), fit, 1:1, a hover signal for the pixel inspector, and linking of two
canvases so they zoom and pan together."""

from __future__ import annotations

import weakref

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap, QTransform
from PySide6.QtWidgets import QGraphicsPixmapItem, QGraphicsRectItem, QGraphicsScene, QGraphicsView, QWidget

from .layers import BlendMode, Layer, LayerStack

COMPOSITION = {
    BlendMode.NORMAL: QPainter.CompositionMode.CompositionMode_SourceOver,
    BlendMode.MULTIPLY: QPainter.CompositionMode.CompositionMode_Multiply,
    BlendMode.SCREEN: QPainter.CompositionMode.CompositionMode_Screen,
    BlendMode.ADDITIVE: QPainter.CompositionMode.CompositionMode_Plus,
}
ZOOM_STEP = 1.25
ZOOM_LIMITS = (0.02, 64.0)


def to_qimage(pixels: np.ndarray) -> QImage:
    """``(h, w, 3)`` RGB or ``(h, w, 4)`` RGBA uint8 -> a QImage that owns a copy of the pixels."""
    height, width, channels = pixels.shape
    data = np.ascontiguousarray(pixels)
    kind = QImage.Format.Format_RGB888 if channels == 3 else QImage.Format.Format_RGBA8888
    return QImage(data.data, width, height, channels * width, kind).copy()


def follow_layers(view: QWidget, layers: LayerStack, slot) -> None:
    """Call ``slot(layer, prop)`` on every change of ``layers`` for as long as the ``view`` widget exists.

    The layer models' psygnal signals hold a weak reference to ``slot``'s object, but a PySide wrapper can
    outlive its C++ widget; unlike a Qt connection, nothing would drop the call to a deleted view. Its
    ``destroyed`` signal does."""
    layers.layer_changed.connect(slot)
    view.destroyed.connect(lambda *_: layers.layer_changed.disconnect(slot))


def thumbnail(pixels: np.ndarray, size: int) -> QImage:
    """A small QImage of ``pixels`` (strided first, so a 12 MP photo costs no more than a small one)."""
    step = max(1, max(pixels.shape[:2]) // (2 * size))
    small = to_qimage(pixels[::step, ::step])
    return small.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)


class LayerItem(QGraphicsPixmapItem):
    """Draws one layer with its blend mode; stretched onto ``layer.rect`` when it has one."""

    def __init__(self, layer: Layer) -> None:
        super().__init__()
        self.layer = layer
        self._buffer: np.ndarray | None = None
        self.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self.setShapeMode(QGraphicsPixmapItem.ShapeMode.BoundingRectShape)
        self.sync("data")

    def sync(self, prop: str) -> None:
        layer = self.layer
        if prop in ("data", "colormap", "scale"):
            pixels = layer.image()
            if layer.display is not None:
                # Wraps the prepared buffer without a copy; the item keeps the array alive with the pixmap.
                self._buffer = layer.display
                height, width = self._buffer.shape
                image = QImage(self._buffer.data, width, height, 4 * width, QImage.Format.Format_RGB32)
                self.setPixmap(QPixmap.fromImage(image))
            else:
                self._buffer = None
                self.setPixmap(QPixmap.fromImage(to_qimage(pixels)) if pixels is not None else QPixmap())
            self.setTransform(self._placement(pixels))
        self.setVisible(layer.visible and layer.data is not None)
        self.setOpacity(layer.opacity)
        self.update()

    def _placement(self, pixels: np.ndarray | None) -> QTransform:
        if pixels is None or self.layer.rect is None:
            return QTransform()
        left, top, right, bottom = self.layer.rect
        height, width = pixels.shape[:2]
        return QTransform((right - left) / width, 0, 0, 0, (bottom - top) / height, 0, left, top, 1)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        painter.setCompositionMode(COMPOSITION[self.layer.blend])
        super().paint(painter, option, widget)


class Canvas(QGraphicsView):
    """Shows a :class:`LayerStack`.

    Signals
    -------
    hovered(float x, float y): the cursor position in photo pixel coordinates (``-1, -1`` on leave).
    view_changed(): zoom or scroll changed by the user (for linked canvases).
    """

    hovered = Signal(float, float)
    view_changed = Signal()

    def __init__(self, layers: LayerStack, parent=None) -> None:
        super().__init__(parent)
        self.layers = layers
        self.setScene(QGraphicsScene(self))
        self.setBackgroundBrush(Qt.GlobalColor.darkGray)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setMouseTracking(True)
        self.items_by_layer: dict[Layer, LayerItem] = {}
        for z, layer in enumerate(layers):
            item = LayerItem(layer)
            item.setZValue(z)
            self.scene().addItem(item)
            self.items_by_layer[layer] = item
        follow_layers(self, layers, self._on_layer_changed)
        # Where the model's input was cut from: a dashed outline above every layer (not exported).
        self.crop_outline = QGraphicsRectItem()
        pen = QPen(QColor(255, 255, 255, 200), 0, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self.crop_outline.setPen(pen)
        self.crop_outline.setZValue(len(layers.layers) + 1)
        self.crop_outline.setVisible(False)
        self.crop_outline.setToolTip("The model's input crop")
        self.scene().addItem(self.crop_outline)
        self._fit_pending = True
        self._fitted = True
        self._shown_photo = None
        self._pan_start: tuple[int, int] | None = None
        # Weak: a reference cycle between widgets would leave their deletion to the garbage collector,
        # which may run in the middle of event handling and crash Qt.
        self._linked: list[weakref.ref[Canvas]] = []
        self._syncing = False
        self.horizontalScrollBar().valueChanged.connect(self._emit_view_changed)
        self.verticalScrollBar().valueChanged.connect(self._emit_view_changed)

    # ------------------------------------------------------------------ layers
    def _on_layer_changed(self, layer: Layer, prop: str) -> None:
        self.items_by_layer[layer].sync(prop)
        if prop == "data" and layer is self.layers.layers[0]:
            if layer.data is not None and layer.data is not self._shown_photo:
                self._fit_pending = True  # another photo (even of the same size) opens whole
            self._shown_photo = layer.data
            self._update_scene_rect()

    def _update_scene_rect(self) -> None:
        """A new photo (or none) shows whole: the view fits whenever the photo's size changes."""
        base = self.layers.layers[0].data
        if base is None:
            return
        rect = QRectF(0, 0, base.shape[1], base.shape[0])
        if rect != self.sceneRect():
            self.setSceneRect(rect)
            self._fit_pending = True
            self._fitted = True
        if self._fit_pending and self.viewport().width() > 1:
            self.fit()

    def set_crop_outline(self, box: tuple[float, float, float, float] | None) -> None:
        """Outline ``(left, top, right, bottom)`` in photo pixels, or hide the outline (``None``)."""
        if box is None:
            self.crop_outline.setVisible(False)
            return
        left, top, right, bottom = box
        self.crop_outline.setRect(QRectF(left, top, right - left, bottom - top))
        self.crop_outline.setVisible(True)

    # ------------------------------------------------------------------ zoom and pan
    @property
    def zoom(self) -> float:
        return self.transform().m11()

    @property
    def fitted(self) -> bool:
        """Whether the view follows "fit" (it re-fits on resize) rather than a zoom the user chose."""
        return self._fitted

    def set_zoom(self, factor: float) -> None:
        self._fitted = False
        factor = min(max(factor, ZOOM_LIMITS[0]), ZOOM_LIMITS[1])
        self.setTransform(QTransform.fromScale(factor, factor))
        self._emit_view_changed()

    def zoom_in(self) -> None:
        self.set_zoom(self.zoom * ZOOM_STEP)

    def zoom_out(self) -> None:
        self.set_zoom(self.zoom / ZOOM_STEP)

    def fit(self) -> None:
        """Show the whole photo."""
        if self.sceneRect().isEmpty():
            return
        self.fitInView(self.sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)
        self._fit_pending = False
        self._fitted = True
        self._emit_view_changed()

    def actual_size(self) -> None:
        """One photo pixel per screen pixel."""
        self.set_zoom(1.0)

    def wheelEvent(self, event) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.set_zoom(self.zoom * ZOOM_STEP**steps)
        event.accept()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fit_pending or self._fitted:
            self.fit()

    def mousePressEvent(self, event) -> None:
        self._pan_start = (self.horizontalScrollBar().value(), self.verticalScrollBar().value())
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event) -> None:
        super().mouseReleaseEvent(event)
        if self._pan_start != (self.horizontalScrollBar().value(), self.verticalScrollBar().value()):
            self._fitted = False  # the user dragged the photo: keep where they put it

    def mouseMoveEvent(self, event) -> None:
        super().mouseMoveEvent(event)
        point: QPointF = self.mapToScene(event.position().toPoint())
        self.hovered.emit(point.x(), point.y())

    def leaveEvent(self, event) -> None:
        super().leaveEvent(event)
        self.hovered.emit(-1.0, -1.0)

    # ------------------------------------------------------------------ linking
    def link(self, other: Canvas) -> None:
        """Zoom and pan ``other`` with this canvas and the other way round."""
        self._linked.append(weakref.ref(other))
        other._linked.append(weakref.ref(self))
        other._follow(self)

    def _emit_view_changed(self, *_) -> None:
        if self._syncing:
            return
        self.view_changed.emit()
        for ref in self._linked:
            other = ref()
            if other is not None:
                other._follow(self)

    def _follow(self, leader: Canvas) -> None:
        self._syncing = True
        try:
            self._fit_pending = False
            self._fitted = leader._fitted
            self.setTransform(leader.transform())
            self.horizontalScrollBar().setValue(leader.horizontalScrollBar().value())
            self.verticalScrollBar().setValue(leader.verticalScrollBar().value())
        finally:
            self._syncing = False

    def render_image(self) -> QImage:
        """The scene (all visible layers, at photo resolution) as an RGB image, for export and tests."""
        rect = self.sceneRect()
        image = QImage(int(rect.width()), int(rect.height()), QImage.Format.Format_RGB32)
        image.fill(Qt.GlobalColor.black)
        outline = self.crop_outline.isVisible()
        self.crop_outline.setVisible(False)
        painter = QPainter(image)
        self.scene().render(painter, QRectF(image.rect()), rect)
        painter.end()
        self.crop_outline.setVisible(outline)
        return image
