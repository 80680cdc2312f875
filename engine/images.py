"""Reading any image file a user may hand us, and converting it to 8-bit RGB.

Everything here works on PIL images and numpy arrays; the model-specific tensor conversion lives in
:mod:`engine.preprocess`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageLoadError

#: Largest image we decode, in pixels (width x height). Guards against decompression bombs: a tiny
#: file that expands to gigabytes. 100 MP covers any current camera.
MAX_PIXELS = 100_000_000

ImageSource = Union[str, os.PathLike, Image.Image, np.ndarray]  # noqa: UP007 (runtime alias, py3.10)


def load_image(source: ImageSource, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Load ``source`` as an 8-bit RGB PIL image in its displayed orientation.

    Parameters
    ----------
    source
        A file path (PNG, JPEG, BMP, TIFF, WebP, GIF...), a PIL image or a numpy array of shape
        ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``: ``uint8`` 0..255, ``uint16`` 0..65535
        or float 0..1.
    max_pixels
        Refuse images larger than this many pixels.

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"``. EXIF orientation is applied; greyscale, palette, CMYK and 16-bit images are
        converted; transparency is composited onto white (the usual background of cut-out photos).

    Raises
    ------
    ImageLoadError
        The file is missing, unreadable, truncated, of an unsupported kind or too large.
    """
    if isinstance(source, np.ndarray):
        return _check_size(_from_array(source), max_pixels, "array")
    if isinstance(source, Image.Image):
        return _check_size(_to_rgb(ImageOps.exif_transpose(source)), max_pixels, "image")
    path = Path(source)
    if not path.exists():
        raise ImageLoadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageLoadError(f"{path}: is a folder, not an image file")
    try:
        with warnings.catch_warnings():
            # We apply our own, stricter limit below; PIL's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                _check_size(image, max_pixels, str(path))
                image.load()
                return _to_rgb(ImageOps.exif_transpose(image))
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{path}: image is too large to open safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"{path}: not an image file, or a format that cannot be read") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageLoadError(f"{path}: the image data is damaged or truncated ({exc})") from exc


def _check_size(image: Image.Image, max_pixels: int, name: str) -> Image.Image:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageLoadError(
            f"{name}: {width}x{height} pixels exceeds the limit of {max_pixels:,} pixels "
            "(a guard against decompression bombs)"
        )
    if width == 0 or height == 0:
        raise ImageLoadError(f"{name}: the image is empty ({width}x{height})")
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB without clipping 16-bit or float data."""
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _from_array(np.asarray(image))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _from_array(array: np.ndarray) -> Image.Image:
    """Build an RGB image from an array (see :func:`load_image` for the accepted shapes and dtypes)."""
    data = np.asarray(array)
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[:, :, 0]
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[2] not in (3, 4)):
        raise ImageLoadError(f"array of shape {data.shape} is not an image (expected H x W [x 1|3|4])")
    if data.dtype == np.uint8:
        pixels = data
    elif data.dtype == np.uint16:
        pixels = np.round(data.astype(np.float64) / 257.0).astype(np.uint8)
    elif np.issubdtype(data.dtype, np.integer):
        # 32-bit integer data (PIL mode "I"): 16-bit content if it exceeds 8 bits.
        scale = 257.0 if data.max(initial=0) > 255 else 1.0
        pixels = np.clip(np.round(data / scale), 0, 255).astype(np.uint8)
    elif np.issubdtype(data.dtype, np.floating):
        if not np.isfinite(data).all():
            raise ImageLoadError("image array contains NaN or infinite values")
        scale = 255.0 if data.max(initial=0.0) <= 1.0 else 1.0
        pixels = np.clip(np.round(data * scale), 0, 255).astype(np.uint8)
    elif data.dtype == np.bool_:
        pixels = data.astype(np.uint8) * 255
    else:
        raise ImageLoadError(f"image array of dtype {data.dtype} is not supported")
    if pixels.ndim == 2:
        return Image.fromarray(pixels).convert("RGB")
    if pixels.shape[2] == 4:
        return _to_rgb(Image.fromarray(np.ascontiguousarray(pixels)))
    return Image.fromarray(np.ascontiguousarray(pixels))
