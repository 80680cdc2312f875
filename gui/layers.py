"""Layer models of the viewer (napari's model/view split): validated properties that emit ``changed``;
views (canvas, layer list, controls) subscribe and never hold state of their own.

The models are plain Python objects with psygnal signals (as napari's are): no Qt here, so they can be
built, changed and saved without a ``QApplication``. Their signals call subscribers synchronously, in
the thread that changes the layer (the GUI thread)."""

from __future__ import annotations

import contextlib
import enum

import numpy as np
from psygnal import Signal

from engine.colormaps import COLORMAPS, DEFAULT_SCALE, SCALES, DisplayRange, display_range, lookup_table

#: Fraction of the value range over which a heat map fades in from fully transparent (at 0).
FADE_IN = 0.1


class BlendMode(str, enum.Enum):
    """How a layer combines with the layers below it (Qt composition modes)."""

    NORMAL = "normal"
    MULTIPLY = "multiply"
    SCREEN = "screen"
    ADDITIVE = "additive"


class Layer:
    """One picture in the stack.

    ``kind`` is ``"rgb"`` (``data``: ``(h, w, 3)`` uint8) or ``"scalar"`` (``data``: ``(h, w)`` float in
    0..1, shown through ``colormap`` on the display ``scale`` of :func:`engine.colormaps.display_range`:
    ``"robust"``, 0 .. the 99.5th percentile, by default, or ``"fixed"`` 0..1). ``rect`` places the
    data in photo pixel coordinates ``(left, top, right, bottom)``: model-resolution maps are stretched
    onto the crop the model saw, so they sit exactly on the photo.

    Signal ``changed(str)`` names the property that changed (``"data"`` for data and rect).
    """

    changed = Signal(str)

    def __init__(
        self,
        name: str,
        kind: str,
        *,
        visible: bool = True,
        opacity: float = 1.0,
        blend: BlendMode = BlendMode.NORMAL,
        colormap: str = "inferno",
        scale: str = DEFAULT_SCALE,
    ) -> None:
        if kind not in ("rgb", "scalar"):
            raise ValueError(f"layer kind must be 'rgb' or 'scalar', not {kind!r}")
        self.name = name
        self.kind = kind
        self._visible = bool(visible)
        self._opacity = _checked_opacity(opacity)
        self._blend = BlendMode(blend)
        self._colormap = _checked_colormap(colormap)
        self._scale = _checked_scale(scale)
        self._data: np.ndarray | None = None
        self._display: np.ndarray | None = None
        self._rect: tuple[float, float, float, float] | None = None
        self._rgba: np.ndarray | None = None
        self._range: DisplayRange | None = None

    # ------------------------------------------------------------------ properties
    @property
    def visible(self) -> bool:
        return self._visible

    @visible.setter
    def visible(self, value: bool) -> None:
        self._set("visible", "_visible", bool(value))

    @property
    def opacity(self) -> float:
        return self._opacity

    @opacity.setter
    def opacity(self, value: float) -> None:
        self._set("opacity", "_opacity", _checked_opacity(value))

    @property
    def blend(self) -> BlendMode:
        return self._blend

    @blend.setter
    def blend(self, value: BlendMode | str) -> None:
        self._set("blend", "_blend", BlendMode(value))

    @property
    def colormap(self) -> str:
        return self._colormap

    @colormap.setter
    def colormap(self, value: str) -> None:
        self._rgba = None
        self._set("colormap", "_colormap", _checked_colormap(value))

    @property
    def scale(self) -> str:
        """Display scale of a heat map, one of :data:`engine.colormaps.SCALES`."""
        return self._scale

    @scale.setter
    def scale(self, value: str) -> None:
        self._rgba = self._range = None
        self._set("scale", "_scale", _checked_scale(value))

    @property
    def data(self) -> np.ndarray | None:
        return self._data

    @property
    def rect(self) -> tuple[float, float, float, float] | None:
        return self._rect

    @property
    def display(self) -> np.ndarray | None:
        """Optional ``(h, w)`` uint32 ``0xFFRRGGBB`` copy of an RGB layer's data, prepared off the GUI
        thread (:func:`to_argb32`) so that showing a 12 MP photo costs no conversion on it."""
        return self._display

    def set_data(
        self,
        data: np.ndarray | None,
        rect: tuple[float, float, float, float] | None = None,
        *,
        display: np.ndarray | None = None,
    ) -> None:
        """Replace the picture; ``rect`` ``None`` = at the origin, one data pixel per photo pixel."""
        if data is not None:
            expected = 3 if self.kind == "rgb" else 2
            if data.ndim != expected or (self.kind == "rgb" and data.shape[2] != 3):
                raise ValueError(f"{self.kind} layer {self.name!r} cannot show data of shape {data.shape}")
        if display is not None and (data is None or display.shape != data.shape[:2] or display.dtype != np.uint32):
            raise ValueError(f"the display copy of layer {self.name!r} must be uint32 of the data's height and width")
        self._data = data
        self._display = display
        self._rect = rect
        self._rgba = self._range = None
        self.changed.emit("data")

    def _set(self, name: str, attribute: str, value) -> None:
        if getattr(self, attribute) != value:
            setattr(self, attribute, value)
            self.changed.emit(name)

    # ------------------------------------------------------------------ rendering
    def display_range(self) -> DisplayRange:
        """Values mapped to the ends of the colormap on the layer's ``scale`` (cached with the data)."""
        if self._range is None:
            self._range = display_range(self._data if self.kind == "scalar" else None, self._scale)
        return self._range

    def image(self) -> np.ndarray | None:
        """The layer as pixels: an RGB layer's own ``(h, w, 3)`` uint8 data (no copy), a heat map as
        ``(h, w, 4)`` uint8 RGBA (cached), transparent at the bottom of the range and fading in over
        :data:`FADE_IN` of it, so a zero map hides nothing."""
        if self._data is None or self.kind == "rgb":
            return self._data
        if self._rgba is None:
            shown = self.display_range()
            low, high = shown.low, shown.high
            scaled = np.clip((self._data.astype(np.float32) - low) / (high - low), 0.0, 1.0)
            colours = lookup_table(self._colormap)[np.round(scaled * 255).astype(np.int64)]
            alpha = np.round(np.clip(scaled / FADE_IN, 0.0, 1.0) * 255).astype(np.uint8)
            self._rgba = np.ascontiguousarray(np.concatenate([colours, alpha[..., None]], axis=2))
        return self._rgba


def to_argb32(pixels: np.ndarray) -> np.ndarray:
    """``(h, w, 3)`` uint8 RGB -> ``(h, w)`` uint32 ``0xFFRRGGBB``: the memory layout of Qt's
    ``QImage.Format_RGB32``, which becomes a pixmap without conversion (any byte order)."""
    rgb = pixels.astype(np.uint32)
    return (0xFF000000 | (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]).astype(np.uint32)


class LayerStack:
    """The viewer's fixed set of layers, bottom to top. ``layer_changed(Layer, str)`` relays each
    layer's ``changed``."""

    layer_changed = Signal(object, str)

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = list(layers)
        for layer in self.layers:
            layer.changed.connect(lambda prop, layer=layer: self.layer_changed.emit(layer, prop))

    def __iter__(self):
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


#: The layer properties a session and the settings keep (a style; not the data).
STYLE = ("visible", "opacity", "blend", "colormap", "scale")


def layer_settings(stack: LayerStack) -> dict[str, dict]:
    """Visibility and style of every layer, by name (sessions keep them; JSON-ready)."""
    return {
        layer.name: {
            "visible": layer.visible,
            "opacity": layer.opacity,
            "blend": layer.blend.value,
            "colormap": layer.colormap,
            "scale": layer.scale,
        }
        for layer in stack
    }


def apply_layer_settings(stack: LayerStack, values: dict) -> None:
    """Restore :func:`layer_settings` (older ones migrated by :func:`migrate_layer_style`); unknown
    layers and properties and invalid values are ignored (a session file may be hostile)."""
    for layer in stack:
        style = values.get(layer.name)
        for prop, value in migrate_layer_style(style if isinstance(style, dict) else {}).items():
            if prop in STYLE:
                with contextlib.suppress(TypeError, ValueError):
                    setattr(layer, prop, value)


def migrate_layer_style(style: dict) -> dict:
    """A layer's stored style (settings ``layers/evidence``, a session's ``layers``) in today's keys.

    Before the display scales, heat maps had ``auto_contrast`` (bool) on a fixed 0..1 default, and every
    save wrote it, ``false`` included, so ``false`` records the old default rather than a choice: both
    values become today's default robust ``scale`` (``true`` asked for a stretched scale; ``false`` left
    deletions black). A stored ``scale`` is kept as it is.
    """
    style = dict(style)
    style.pop("auto_contrast", None)
    return style


def default_layers() -> LayerStack:
    """Photo, explanation ``e``, deletion view ``(1-m)*x``, per-channel mask and evidence heat map."""
    return LayerStack([
        Layer(PHOTO, "rgb"),
        Layer(EXPLANATION, "rgb", visible=False),
        Layer(DELETION, "rgb", visible=False),
        Layer(CHANNEL_MASK, "rgb", visible=False),
        Layer(EVIDENCE, "scalar", opacity=0.7),
    ])  # fmt: skip


PHOTO = "Photo"
EXPLANATION = "Explanation e"
DELETION = "Deletion view (1-m)·x"
CHANNEL_MASK = "Per-channel mask"
EVIDENCE = "Evidence"


def _checked_opacity(value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, not {value}")
    return value


def _checked_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"unknown display scale {scale!r}; choose one of {', '.join(SCALES)}")
    return scale


def _checked_colormap(name: str) -> str:
    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap {name!r}; choose one of {', '.join(COLORMAPS)}")
    return name
