"""Layer list (visibility check boxes, thumbnails) and the controls of the selected layer (opacity,
blend mode, colormap, fixed 0..1 or robust display scale) with a colour bar that prints the range in
use. Pure views of :mod:`gui.layers`."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QLinearGradient, QPainter, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QListWidget,
    QListWidgetItem,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from engine.colormaps import COLORMAPS, DisplayRange, display_range, format_value, lookup_table

from .canvas import follow_layers, thumbnail
from .layers import BlendMode, Layer, LayerStack

THUMBNAIL = QSize(40, 40)


class ColorBar(QWidget):
    """A horizontal colour bar: the colormap with the ends of its display range written under them and
    the scale between them (the whole range as the tooltip)."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.colormap = "inferno"
        self.shown = display_range(None)
        self.setMinimumHeight(34)

    def show_scale(self, colormap: str, shown: DisplayRange) -> None:
        self.colormap, self.shown = colormap, shown
        self.setToolTip(f"evidence colour scale {shown.text()}")
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        bar = self.rect().adjusted(4, 2, -4, -18)
        gradient = QLinearGradient(bar.left(), 0, bar.right(), 0)
        table = lookup_table(self.colormap)
        for index in range(0, 256, 15):
            r, g, b = (int(v) for v in table[index])
            gradient.setColorAt(index / 255.0, QColor(r, g, b))
        painter.fillRect(bar, gradient)
        painter.setPen(self.palette().windowText().color())
        text_y = self.rect().bottom() - 3
        painter.drawText(bar.left(), text_y, format_value(self.shown.low))
        label = format_value(self.shown.high)
        painter.drawText(bar.right() - painter.fontMetrics().horizontalAdvance(label), text_y, label)
        middle = "robust scale (99.5th pct)" if self.shown.scale == "robust" else "fixed 0..1 scale"
        metrics = painter.fontMetrics()
        ends = metrics.horizontalAdvance(format_value(self.shown.low)) + metrics.horizontalAdvance(label)
        if metrics.horizontalAdvance(middle) + ends + 16 > bar.width():
            middle = "robust" if self.shown.scale == "robust" else "fixed"  # a narrow dock: the short word
        if metrics.horizontalAdvance(middle) + ends + 16 <= bar.width():
            painter.drawText(bar.center().x() - metrics.horizontalAdvance(middle) // 2, text_y, middle)
        painter.end()


class LayerPanel(QWidget):
    """Lists the layers top-first; edits the selected one. ``selected_layer()`` names it."""

    selection_changed = Signal(object)

    def __init__(self, layers: LayerStack, parent=None) -> None:
        super().__init__(parent)
        self.layers = layers
        self.list = QListWidget()
        self.list.setIconSize(THUMBNAIL)
        self.list.setObjectName("layer_list")
        self.list.setMinimumHeight(3 * (THUMBNAIL.height() + 6))
        for layer in reversed(layers.layers):
            item = QListWidgetItem(layer.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setData(Qt.ItemDataRole.UserRole, layer.name)
            self.list.addItem(item)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setObjectName("opacity")
        self.blend = QComboBox()
        self.blend.addItems([mode.value for mode in BlendMode])
        self.colormap = QComboBox()
        self.colormap.addItems(list(COLORMAPS))
        self.fixed_scale = QCheckBox("Fixed 0..1 scale")
        self.fixed_scale.setToolTip(
            "Colour the evidence on the absolute 0..1 scale instead of the robust "
            "scale (0 .. the 99.5th percentile of this map)"
        )
        self.color_bar = ColorBar()
        form = QFormLayout()
        form.addRow("Opacity", self.opacity)
        form.addRow("Blend", self.blend)
        form.addRow("Colormap", self.colormap)
        form.addRow(self.fixed_scale)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.list, 1)
        layout.addLayout(form)
        layout.addWidget(self.color_bar)

        self._updating = False
        self.list.itemChanged.connect(self._on_item_changed)
        self.list.currentItemChanged.connect(lambda *_: self._show_controls())
        self.opacity.valueChanged.connect(lambda v: self._edit("opacity", v / 100.0))
        self.blend.currentTextChanged.connect(lambda v: self._edit("blend", v))
        self.colormap.currentTextChanged.connect(lambda v: self._edit("colormap", v))
        self.fixed_scale.toggled.connect(lambda v: self._edit("scale", "fixed" if v else "robust"))
        follow_layers(self, layers, self._on_layer_changed)
        for layer in layers:
            self._refresh_item(layer)
        self.list.setCurrentRow(0)

    def selected_layer(self) -> Layer:
        item = self.list.currentItem() or self.list.item(0)
        return self.layers[item.data(Qt.ItemDataRole.UserRole)]

    def select(self, name: str) -> None:
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole) == name:
                self.list.setCurrentRow(row)

    def _item(self, layer: Layer) -> QListWidgetItem:
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == layer.name:
                return item
        raise KeyError(layer.name)

    def _refresh_item(self, layer: Layer) -> None:
        self._updating = True
        try:
            item = self._item(layer)
            item.setCheckState(Qt.CheckState.Checked if layer.visible else Qt.CheckState.Unchecked)
            pixels = layer.image()
            if pixels is not None:
                item.setIcon(QIcon(QPixmap.fromImage(thumbnail(pixels, THUMBNAIL.width()))))
            else:
                blank = QPixmap(THUMBNAIL)
                blank.fill(Qt.GlobalColor.transparent)
                item.setIcon(QIcon(blank))  # keeps every row as tall as the ones with a thumbnail
            item.setToolTip("" if layer.data is not None else "empty until a result is shown")
        finally:
            self._updating = False

    def _on_layer_changed(self, layer: Layer, prop: str) -> None:
        if prop in ("visible", "data", "colormap", "scale"):
            self._refresh_item(layer)
        if layer is self.selected_layer():
            self._show_controls()

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        if self._updating:
            return
        layer = self.layers[item.data(Qt.ItemDataRole.UserRole)]
        layer.visible = item.checkState() == Qt.CheckState.Checked

    def _show_controls(self) -> None:
        layer = self.selected_layer()
        self._updating = True
        try:
            self.opacity.setValue(round(layer.opacity * 100))
            self.blend.setCurrentText(layer.blend.value)
            self.colormap.setCurrentText(layer.colormap)
            self.fixed_scale.setChecked(layer.scale == "fixed")
            scalar = layer.kind == "scalar"
            self.colormap.setEnabled(scalar)
            self.fixed_scale.setEnabled(scalar)
            self.color_bar.setVisible(scalar)
            if scalar:
                self.color_bar.show_scale(layer.colormap, layer.display_range())
        finally:
            self._updating = False
        self.selection_changed.emit(layer)

    def _edit(self, prop: str, value) -> None:
        if not self._updating:
            setattr(self.selected_layer(), prop, value)
