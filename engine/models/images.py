"""Reading any image file a user may hand us, and converting it to 8-bit RGB.

Everything here works on PIL images and numpy arrays; the model-specific tensor conversion lives in
:mod:`engine.models.preprocess`.
"""

from __future__ import annotations

import os
import warnings
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import ImageLoadError
from engine.models.inputs import regular_file

#: Largest image we decode, in pixels (width x height). Guards against decompression bombs: a tiny
#: file that expands to gigabytes. 100 MP covers any current camera.
MAX_PIXELS = 100_000_000

#: Largest ratio of the long side to the short side. The model sees a centre square of the photo, so a
#: longer strip would be explained from a sliver of it; 50:1 admits 360-degree panoramas (about 8:1 to
#: 12:1) and long banners. Checked from the file's header, before anything is decoded.
MAX_ASPECT_RATIO = 50

IMAGE_FILE = "an image file"

ImageSource = Union[str, os.PathLike, Image.Image, np.ndarray]  # noqa: UP007 (runtime alias, py3.10)


def load_image(
    source: ImageSource, *, max_pixels: int = MAX_PIXELS, max_aspect_ratio: float = MAX_ASPECT_RATIO
) -> Image.Image:
    """Load ``source`` as an 8-bit RGB PIL image in its displayed orientation.

    Parameters
    ----------
    source
        A file path (PNG, JPEG, BMP, TIFF, WebP, GIF...), a PIL image or a numpy array of shape
        ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)``: ``uint8`` 0..255, ``uint16`` 0..65535
        or float 0..1.
    max_pixels
        Refuse images larger than this many pixels (default :data:`MAX_PIXELS`).
    max_aspect_ratio
        Refuse images whose long side is more than this many times their short side (default
        :data:`MAX_ASPECT_RATIO`).

    Both limits are checked before the pixels are decoded (from the file's header) or converted.

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"``. EXIF orientation is applied; greyscale, palette, CMYK and 16-bit images are
        converted; transparency is composited onto white (the usual background of cut-out photos).

    Raises
    ------
    ImageLoadError
        The path is missing or not a regular file (a folder, a FIFO, a device...), cannot be read (no
        permission, an input/output error), is not an image, is truncated or damaged, or is too large; the
        message names the file.
    """
    limits = (max_pixels, max_aspect_ratio)
    if isinstance(source, np.ndarray):
        if source.ndim in (2, 3):  # other shapes: _from_array says what is expected
            _check_shape((source.shape[1], source.shape[0]), *limits, "array")
        return _from_array(source, "array")
    if isinstance(source, Image.Image):
        _check_size(source, *limits, "image")
        return _to_rgb(ImageOps.exif_transpose(source), "image")
    path = regular_file(source, IMAGE_FILE, ImageLoadError)  # before opening: a FIFO would block for ever
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below; PIL reads from it)
    except OSError as exc:
        raise read_error(path, exc) from exc
    try:
        with handle, warnings.catch_warnings():
            # We apply our own, stricter limit below; PIL's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(handle) as image:
                _check_size(image, *limits, str(path))  # from the header, before decoding
                image.load()
                return _check_size(_to_rgb(ImageOps.exif_transpose(image), str(path)), *limits, str(path))
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"{path}: image is too large to open safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"{path}: not an image file, or a format that cannot be read") from exc
    except (OSError, ValueError, SyntaxError, OverflowError) as exc:
        raise read_error(path, exc) from exc


def read_error(path: str | os.PathLike, exc: BaseException) -> ImageLoadError:
    """The :class:`ImageLoadError` for an exception met while opening or decoding the image file ``path``.

    An operating-system error (it carries an ``errno``: no permission, an input/output error...) means the
    file cannot be read, whatever it holds; anything else means its data is damaged or truncated."""
    if isinstance(exc, OSError) and exc.errno is not None:
        problem = exc.strerror or os.strerror(exc.errno)
        hint = " (check the permissions of the file and of its folders)" if isinstance(exc, PermissionError) else ""
        return ImageLoadError(f"{path} cannot be read: {problem}{hint}")
    return ImageLoadError(f"{path}: the image data is damaged or truncated ({exc})")


def _check_size(image: Image.Image, max_pixels: int, max_aspect_ratio: float, name: str) -> Image.Image:
    _check_shape(image.size, max_pixels, max_aspect_ratio, name)
    return image


def _check_shape(size: tuple[int, int], max_pixels: int, max_aspect_ratio: float, name: str) -> None:
    """Refuse a ``(width, height)`` that is empty, has more than ``max_pixels`` pixels or a long side more
    than ``max_aspect_ratio`` times the short side."""
    width, height = size
    if width == 0 or height == 0:
        raise ImageLoadError(f"{name}: the image is empty ({width}x{height})")
    if width * height > max_pixels:
        raise ImageLoadError(
            f"{name}: {width}x{height} pixels exceeds the limit of {max_pixels:,} pixels "
            "(a guard against decompression bombs)"
        )
    ratio = max(width, height) / min(width, height)
    if ratio > max_aspect_ratio:
        raise ImageLoadError(
            f"{name}: {width}x{height} pixels, its long side is {ratio:,.0f} times its short side, more than the "
            f"limit of {max_aspect_ratio:g} (the model sees a centre square of the photo: cut it into parts first)"
        )


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB without clipping 16-bit or float data (``name``: for messages)."""
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _from_array(np.asarray(image), name)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _from_array(array: np.ndarray, name: str) -> Image.Image:
    """Build an RGB image from an array (see :func:`load_image` for the accepted shapes and dtypes);
    ``name`` (a file, or ``"array"``) starts every message."""
    data = np.asarray(array)
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[:, :, 0]
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[2] not in (3, 4)):
        channels_first = data.ndim == 3 and data.shape[0] in (1, 3, 4)
        hint = " (channels first? use array.transpose(1, 2, 0))" if channels_first else ""
        raise ImageLoadError(f"{name} of shape {data.shape} is not an image (expected H x W [x 1|3|4]){hint}")
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
            raise ImageLoadError(f"{name}: the image contains NaN or infinite values")
        scale = 255.0 if data.max(initial=0.0) <= 1.0 else 1.0
        pixels = np.clip(np.round(data * scale), 0, 255).astype(np.uint8)
    elif data.dtype == np.bool_:
        pixels = data.astype(np.uint8) * 255
    else:
        raise ImageLoadError(f"{name}: image data of type {data.dtype} is not supported")
    if pixels.ndim == 2:
        return Image.fromarray(pixels).convert("RGB")
    if pixels.shape[2] == 4:
        return _to_rgb(Image.fromarray(np.ascontiguousarray(pixels)), name)
    return Image.fromarray(np.ascontiguousarray(pixels))
