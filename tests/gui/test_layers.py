"""Layer models and the canvas: validated properties, change signals, and what ends up in the pixels."""

from __future__ import annotations

import numpy as np
import pytest

from engine.colormaps import lookup_table
from gui.canvas import Canvas
from gui.layers import BlendMode, Layer, LayerStack


def test_properties_are_validated_and_signal_each_real_change(qtbot):
    layer = Layer("evidence", "scalar")
    changes = []
    layer.changed.connect(changes.append)
    layer.opacity = 0.5
    layer.opacity = 0.5  # no change, no signal
    layer.colormap = "viridis"
    layer.blend = "multiply"
    layer.visible = False
    assert changes == ["opacity", "colormap", "blend", "visible"]
    assert layer.blend is BlendMode.MULTIPLY
    with pytest.raises(ValueError, match="opacity"):
        layer.opacity = 1.5
    with pytest.raises(ValueError, match="colormap"):
        layer.colormap = "jet"
    with pytest.raises(ValueError):
        layer.blend = "overlay"
    with pytest.raises(ValueError, match="shape"):
        layer.set_data(np.zeros((4, 4, 3), np.float32))
    assert layer.opacity == 0.5 and layer.colormap == "viridis"


def test_heat_map_is_transparent_at_zero_on_the_robust_or_the_fixed_scale():
    layer = Layer("evidence", "scalar", scale="fixed")
    layer.set_data(np.array([[0.0, 0.05, 0.5, 1.0]], np.float32))
    rgba = layer.image()
    assert rgba[0, 0, 3] == 0 and 0 < rgba[0, 1, 3] < 255 and rgba[0, 2, 3] == 255
    assert (layer.display_range().low, layer.display_range().high) == (0.0, 1.0)
    weak = Layer("evidence", "scalar")  # robust by default: a weak deletion is not drawn black
    weak.set_data(np.array([[0.0, 0.001, 0.01, 0.02, 0.02]], np.float32))
    shown = weak.display_range()
    assert (shown.scale, shown.low, shown.high) == ("robust", 0.0, pytest.approx(0.02, abs=1e-4))
    rgba = weak.image()
    assert rgba[0, 0, 3] == 0 and 0 < rgba[0, 1, 3] < 255 and rgba[0, 3, 3] == 255
    assert tuple(rgba[0, 3, :3]) == tuple(lookup_table("inferno")[-1])  # the top colour, not black
    changes = []
    weak.changed.connect(changes.append)
    weak.scale = "fixed"
    assert changes == ["scale"] and weak.display_range().high == 1.0 and weak.image()[0, 3, 3] < 255
    with pytest.raises(ValueError, match="display scale"):
        weak.scale = "auto"


def _stack():
    photo = Layer("photo", "rgb")
    evidence = Layer("evidence", "scalar", opacity=1.0, scale="fixed")
    photo.set_data(np.full((40, 60, 3), 100, np.uint8))
    evidence.set_data(np.full((10, 10), 0.8, np.float32), (20.0, 10.0, 40.0, 30.0))
    return LayerStack([photo, evidence]), photo, evidence


def _pixel(canvas: Canvas, x: int, y: int) -> tuple[int, int, int]:
    colour = canvas.render_image().pixelColor(x, y)
    return colour.red(), colour.green(), colour.blue()


def test_layer_changes_reach_the_rendered_pixels(qtbot):
    stack, _photo, evidence = _stack()
    canvas = Canvas(stack)
    qtbot.addWidget(canvas)
    grey = (100, 100, 100)
    assert _pixel(canvas, 5, 5) == grey  # outside the evidence rectangle
    inferno = _pixel(canvas, 30, 20)
    assert inferno != grey
    evidence.colormap = "gray"
    assert _pixel(canvas, 30, 20) == pytest.approx((204, 204, 204), abs=2)
    evidence.opacity = 0.5
    assert _pixel(canvas, 30, 20) == pytest.approx((152, 152, 152), abs=3)
    evidence.blend = "multiply"
    evidence.opacity = 1.0
    assert _pixel(canvas, 30, 20) == pytest.approx((80, 80, 80), abs=3)  # 100 * 204 / 255
    evidence.visible = False
    assert _pixel(canvas, 30, 20) == grey
    evidence.visible = True
    evidence.set_data(np.zeros((10, 10), np.float32), (20.0, 10.0, 40.0, 30.0))
    evidence.blend = "normal"
    assert _pixel(canvas, 30, 20) == grey  # transparent at zero


def test_model_resolution_maps_sit_on_their_crop_box(qtbot):
    stack, _, evidence = _stack()
    evidence.colormap = "gray"
    canvas = Canvas(stack)
    qtbot.addWidget(canvas)
    assert _pixel(canvas, 19, 20) == (100, 100, 100)
    assert _pixel(canvas, 21, 20) != (100, 100, 100)
    assert _pixel(canvas, 38, 28) != (100, 100, 100)
    assert _pixel(canvas, 41, 20) == (100, 100, 100)


def test_zoom_fit_actual_size_and_linked_views(qtbot):
    stack_a, _, _ = _stack()
    stack_b, _, _ = _stack()
    a, b = Canvas(stack_a), Canvas(stack_b)
    for canvas in (a, b):
        qtbot.addWidget(canvas)
        canvas.resize(300, 200)
        canvas.show()
    a.link(b)
    a.actual_size()
    assert a.zoom == 1.0 and b.zoom == 1.0
    a.zoom_in()
    assert a.zoom == pytest.approx(1.25) and b.zoom == pytest.approx(1.25)
    b.set_zoom(8.0)
    assert a.zoom == pytest.approx(8.0)
    a.horizontalScrollBar().setValue(a.horizontalScrollBar().maximum() // 2)
    assert b.horizontalScrollBar().value() == a.horizontalScrollBar().value() > 0
    a.fit()
    assert a.zoom == pytest.approx(min(300 / 60, 200 / 40), rel=0.1)
    assert b.zoom == a.zoom


def test_a_prepared_display_copy_renders_the_same_pixels(qtbot):
    from gui.layers import to_argb32

    pixels = np.zeros((30, 40, 3), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = 10, 200, 30
    pixels[5, 7] = (1, 2, 3)
    assert to_argb32(pixels)[5, 7] == 0xFF010203
    photo = Layer("photo", "rgb")
    photo.set_data(pixels, display=to_argb32(pixels))
    canvas = Canvas(LayerStack([photo]))
    qtbot.addWidget(canvas)
    assert _pixel(canvas, 7, 5) == (1, 2, 3) and _pixel(canvas, 20, 20) == (10, 200, 30)
    with pytest.raises(ValueError, match="display"):
        photo.set_data(pixels, display=to_argb32(pixels[:10]))


def test_a_deleted_view_is_no_longer_called(qtbot):
    from PySide6.QtCore import QCoreApplication, QEvent

    stack = LayerStack([Layer("a", "scalar")])
    canvas = Canvas(stack)
    canvas.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    stack["a"].opacity = 0.3  # the canvas's C++ object is gone: its subscription went with it
    assert stack["a"].opacity == 0.3
