"""Colormaps and the display scale of evidence maps, on arrays whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from engine.colormaps import (
    DEFAULT_SCALE,
    ROBUST_FLOOR,
    ROBUST_PERCENTILE,
    apply_colormap,
    display_range,
    lookup_table,
)


def test_a_few_strong_pixels_do_not_set_the_scale_of_a_weak_deletion():
    evidence = np.full((100, 100), 0.02, np.float32)  # a deletion: 2 % of the mass changed everywhere ...
    evidence[:10, :10] = 0.04  # ... twice that on the object (1 % of the pixels) ...
    evidence[0, :3] = 1.0  # ... and three outlier pixels
    shown = display_range(evidence)
    assert shown.scale == DEFAULT_SCALE == "robust"
    assert (shown.low, shown.high) == (0.0, pytest.approx(0.04))
    assert shown.text() == f"0 - 0.04 (robust: {ROBUST_PERCENTILE:g}th percentile)"
    colours = apply_colormap(evidence, "gray", shown.low, shown.high)
    assert colours[50, 50, 0] == 128 and colours[5, 5, 0] == 255  # half and full brightness, not black
    assert apply_colormap(evidence, "gray")[50, 50, 0] == 5  # what the fixed scale showed


def test_the_fixed_scale_is_zero_to_one_whatever_the_map():
    evidence = np.full((8, 8), 0.03, np.float32)
    shown = display_range(evidence, "fixed")
    assert (shown.low, shown.high, shown.text()) == (0.0, 1.0, "0 - 1 (fixed)")


@pytest.mark.parametrize(
    ("evidence", "high"),
    [
        (np.zeros((16, 16)), ROBUST_FLOOR),  # nothing: the floor, not noise blown up to full colour
        (np.full((16, 16), 1e-6), ROBUST_FLOOR),
        (np.full((16, 16), 0.3), 0.3),  # constant: all at the top, honestly labelled 0 - 0.3
        (np.ones((16, 16)), 1.0),
        (np.array([[np.nan, 0.5], [0.5, np.inf]]), 0.5),  # non-finite values are ignored
        (np.full((2, 2), np.nan), ROBUST_FLOOR),
        (None, ROBUST_FLOOR),  # no map yet
    ],
)
def test_the_robust_range_is_finite_starts_at_zero_and_ends_in_floor_to_one(evidence, high):
    shown = display_range(evidence)
    assert shown.low == 0.0 and shown.high == pytest.approx(high)
    assert np.isfinite([shown.low, shown.high]).all() and ROBUST_FLOOR <= shown.high <= 1.0


def test_unknown_scale_and_colormap_are_clear_errors():
    with pytest.raises(ValueError, match="display scale"):
        display_range(np.zeros((2, 2)), "auto")
    with pytest.raises(ValueError, match="colormap"):
        lookup_table("jet")
