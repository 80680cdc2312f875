"""Perceptually uniform colormaps for evidence maps, without a plotting library.

Each map is 17 evenly spaced anchors of matplotlib's map of the same name (CC0), linearly interpolated
to a 256-entry lookup table; the interpolation is within 7 of 255 levels of the original everywhere.
"""

from __future__ import annotations

import numpy as np

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
