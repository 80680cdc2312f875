"""Perceptually uniform colormaps for evidence maps, without a plotting library, and the value range an
evidence map is shown on.

Each map is 17 evenly spaced anchors of matplotlib's map of the same name (CC0), linearly interpolated
to a 256-entry lookup table; the interpolation is within 7 of 255 levels of the original everywhere.

Display scales (:func:`display_range`): evidence (``m`` kept, ``1 - m`` deleted) lies in 0..1, but a
deletion changes only a few per cent of it, so on the fixed 0..1 scale it renders nearly black. The
default ``"robust"`` scale keeps 0 at the bottom (no evidence stays transparent, nothing negative is
invented) and puts the top of the colormap at the :data:`ROBUST_PERCENTILE` th percentile of the map,
never below :data:`ROBUST_FLOOR`; ``"fixed"`` is the absolute 0..1 scale. The range in use is always
printed beside the colours (:meth:`DisplayRange.text`), so a stretched map does not pass for a strong one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The display scales of an evidence map: robust maximum (the default) and the absolute 0..1 scale.
SCALES = ("robust", "fixed")
DEFAULT_SCALE = "robust"
#: Percentile of the evidence at the top of the robust scale: the strongest 0.5 % of pixels saturate,
#: so one outlier pixel does not darken the rest, and a 224x224 map still shows ~250 pixels at full colour.
ROBUST_PERCENTILE = 99.5
#: Lowest top of the robust scale, one level of an 8-bit picture: evidence weaker than that does not even
#: survive the exported 8-bit explanation, so it is not stretched to full colour, and an all-zero or
#: numerically flat map is not turned into bright noise. Deletions are barely above it: the 99.5th
#: percentile of ``1 - m`` is 0.005-0.06 after 60 steps on the bundled photos, black on the fixed scale.
ROBUST_FLOOR = 1.0 / 255.0

_ANCHORS = {
    "inferno": [
        (0, 0, 4),
        (11, 7, 36),
        (33, 12, 74),
        (61, 9, 101),
        (87, 16, 110),
        (113, 25, 110),
        (138, 34, 106),
        (163, 44, 97),
        (188, 55, 84),
        (210, 70, 68),
        (228, 90, 49),
        (241, 115, 29),
        (249, 142, 9),
        (252, 172, 17),
        (249, 203, 53),
        (242, 234, 105),
        (252, 255, 164),
    ],
    "viridis": [
        (68, 1, 84),
        (72, 24, 106),
        (71, 45, 123),
        (66, 64, 134),
        (59, 82, 139),
        (51, 99, 141),
        (44, 114, 142),
        (38, 130, 142),
        (33, 145, 140),
        (31, 160, 136),
        (40, 174, 128),
        (63, 188, 115),
        (94, 201, 98),
        (132, 212, 75),
        (173, 220, 48),
        (216, 226, 25),
        (253, 231, 37),
    ],
    "magma": [
        (0, 0, 4),
        (10, 8, 34),
        (29, 17, 71),
        (54, 16, 107),
        (81, 18, 124),
        (106, 28, 129),
        (131, 38, 129),
        (156, 46, 127),
        (183, 55, 121),
        (208, 65, 111),
        (231, 82, 99),
        (245, 107, 92),
        (252, 137, 97),
        (254, 167, 114),
        (254, 196, 136),
        (253, 226, 163),
        (252, 253, 191),
    ],
    "gray": [(0, 0, 0), (255, 255, 255)],
}

COLORMAPS = tuple(_ANCHORS)


def lookup_table(name: str) -> np.ndarray:
    """The ``(256, 3)`` ``uint8`` RGB table of colormap ``name`` (one of :data:`COLORMAPS`)."""
    if name not in _ANCHORS:
        raise ValueError(f"unknown colormap {name!r}; choose one of {', '.join(COLORMAPS)}")
    anchors = np.asarray(_ANCHORS[name], dtype=np.float64)
    positions = np.linspace(0.0, 1.0, len(anchors))
    levels = np.linspace(0.0, 1.0, 256)
    table = np.stack([np.interp(levels, positions, anchors[:, c]) for c in range(3)], axis=1)
    return np.round(table).astype(np.uint8)


def apply_colormap(values: np.ndarray, name: str = "inferno", vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Colour a map: ``(H, W)`` floats -> ``(H, W, 3)`` ``uint8`` RGB, ``vmin``..``vmax`` spanning the
    table (values outside are clipped; a fixed absolute scale by default)."""
    if vmax <= vmin:
        raise ValueError(f"vmax ({vmax}) must be greater than vmin ({vmin})")
    scaled = np.clip((np.asarray(values, dtype=np.float64) - vmin) / (vmax - vmin), 0.0, 1.0)
    return lookup_table(name)[np.round(scaled * 255).astype(np.int64)]


@dataclass(frozen=True)
class DisplayRange:
    """The values shown at the ends of the colormap, and the scale that chose them.

    Attributes
    ----------
    low, high
        Evidence values at the bottom and the top of the colormap; ``0 <= low < high <= 1``.
    scale
        One of :data:`SCALES`.
    """

    low: float
    high: float
    scale: str

    def text(self) -> str:
        """The range as printed beside a colour bar, e.g. ``"0 - 0.034 (robust: 99.5th percentile)"``."""
        how = f"robust: {ROBUST_PERCENTILE:g}th percentile" if self.scale == "robust" else "fixed"
        return f"{format_value(self.low)} - {format_value(self.high)} ({how})"


def display_range(evidence: np.ndarray | None, scale: str = DEFAULT_SCALE) -> DisplayRange:
    """The range an evidence map is coloured on.

    Parameters
    ----------
    evidence
        ``(H, W)`` floats in 0..1 (NaNs are ignored); ``None`` (no map yet) gives the scale's range for an
        empty map.
    scale
        ``"robust"``: 0 .. the :data:`ROBUST_PERCENTILE` th percentile, clamped to
        :data:`ROBUST_FLOOR` .. 1. ``"fixed"``: 0 .. 1.

    Returns
    -------
    DisplayRange
        Finite, with ``low`` 0 and ``high`` in ``ROBUST_FLOOR`` .. 1.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown display scale {scale!r}; choose one of {', '.join(SCALES)}")
    if scale == "fixed":
        return DisplayRange(0.0, 1.0, scale)
    values = np.asarray(evidence if evidence is not None else [], dtype=np.float64)
    values = values[np.isfinite(values)]
    top = float(np.percentile(values, ROBUST_PERCENTILE)) if values.size else 0.0
    return DisplayRange(0.0, min(max(top, ROBUST_FLOOR), 1.0), scale)


def format_value(value: float) -> str:
    """An end of a display range in two significant digits: ``0``, ``0.034``, ``0.5``, ``1``."""
    return f"{value:.2g}"
