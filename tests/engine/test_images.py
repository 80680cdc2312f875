"""Image loading: formats, orientation, odd modes, bombs and broken files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine import ImageLoadError, load_image


def _gradient(width=40, height=30):
    x = np.linspace(0, 255, width, dtype=np.float64)
    y = np.linspace(0, 255, height, dtype=np.float64)[:, None]
    return np.stack(
        [np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)), np.full((height, width), 128.0)],
        axis=2,
    ).astype(np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tiff", ".webp"])
def test_common_formats_load_as_rgb(tmp_path, suffix):
    path = tmp_path / f"image{suffix}"
    Image.fromarray(_gradient()).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (40, 30)
    assert np.abs(np.asarray(image, dtype=int) - _gradient()).mean() < 4  # lossy formats stay close


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(_gradient(40, 30)).save(path, exif=exif)
    assert load_image(path).size == (30, 40)


def test_greyscale_palette_and_rgba_become_rgb(tmp_path):
    grey = tmp_path / "grey.png"
    Image.fromarray(_gradient()[:, :, 0]).save(grey)
    palette = tmp_path / "palette.gif"
    Image.fromarray(_gradient()).convert("P").save(palette)
    rgba = tmp_path / "rgba.png"
    pixels = np.zeros((30, 40, 4), np.uint8)
    pixels[..., 0] = 255
    pixels[:, :20, 3] = 255  # left half opaque red, right half fully transparent
    Image.fromarray(pixels).save(rgba)
    assert load_image(grey).getpixel((39, 0)) == (255, 255, 255)
    assert load_image(palette).mode == "RGB"
    loaded = load_image(rgba)
    assert loaded.getpixel((0, 0)) == (255, 0, 0)
    assert loaded.getpixel((39, 0)) == (255, 255, 255)  # transparency composited onto white


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    values = np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16)
    Image.fromarray(values).save(path)
    loaded = np.asarray(load_image(path))
    assert loaded[0, 0, 0] == 0 and loaded[-1, -1, 0] == 255
    assert 120 <= loaded[15, 20, 0] <= 135  # mid-grey stays mid-grey


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.full((4, 5), 0.5, np.float32), 128),
        (np.full((4, 5, 3), 65535, np.uint16), 255),
        (np.full((4, 5, 1), 7, np.uint8), 7),
    ],
)
def test_arrays_of_several_dtypes(array, expected):
    image = load_image(array)
    assert image.size == (5, 4) and image.getpixel((0, 0)) == (expected,) * 3


def test_corrupt_truncated_and_missing_files_raise_clear_errors(tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not a picture")
    truncated = tmp_path / "cut.jpg"
    Image.fromarray(_gradient(200, 200)).save(tmp_path / "full.jpg")
    truncated.write_bytes((tmp_path / "full.jpg").read_bytes()[:600])
    with pytest.raises(ImageLoadError, match=r"notes.png: not an image"):
        load_image(not_image)
    with pytest.raises(ImageLoadError, match=r"cut.jpg: the image data is damaged or truncated"):
        load_image(truncated)
    with pytest.raises(ImageLoadError, match=r"no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageLoadError, match=r"is not a regular file but a folder"):
        load_image(tmp_path)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("L", (5000, 5000)).save(path)  # compresses to a few kB
    with pytest.raises(ImageLoadError, match=r"exceeds the limit"):
        load_image(path, max_pixels=1_000_000)


def test_bad_arrays_are_refused():
    with pytest.raises(ImageLoadError, match=r"not an image"):
        load_image(np.zeros((2, 3, 7)))
    with pytest.raises(ImageLoadError, match=r"NaN"):
        load_image(np.full((2, 3), np.nan))
