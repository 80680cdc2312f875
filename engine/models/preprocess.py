"""Model-specific preprocessing: PIL photo -> normalised tensor, and back to pixels.

A :class:`Preprocessing` resizes the short side, centre-crops, and normalises each channel as
``(pixel - mean) / std`` with ``pixel`` in 0..255. A :class:`Geometry` remembers where the crop came
from so that maps at model resolution can be pasted back onto the original photo.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


@dataclass(frozen=True)
class Geometry:
    """Where the model's input came from in the original photo.

    Attributes
    ----------
    original_size
        ``(width, height)`` of the photo after EXIF orientation.
    crop_box
        ``(left, top, right, bottom)`` of the model's input in original-photo pixel coordinates
        (floats; the crop is axis-aligned and keeps the aspect ratio).
    """

    original_size: tuple[int, int]
    crop_box: tuple[float, float, float, float]


@dataclass(frozen=True)
class Preprocessing:
    """Resize the short side to ``resize`` (``None``: straight to ``crop``), centre-crop to ``crop``
    ``(height, width)``, then ``(pixel - mean) / std`` per channel with ``pixel`` in 0..255."""

    crop: tuple[int, int] = (224, 224)
    resize: int | None = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __call__(self, image: Image.Image) -> tuple[torch.Tensor, Geometry]:
        """Return the normalised tensor ``(1, 3, crop_h, crop_w)`` float32 and its :class:`Geometry`."""
        image = image.convert("RGB")
        width, height = image.size
        crop_h, crop_w = self.crop
        if self.resize is None:
            scale_x, scale_y = crop_w / width, crop_h / height
            resized = image.resize((crop_w, crop_h), Image.Resampling.BILINEAR)
            left = top = 0
        else:
            scale_x = scale_y = self.resize / min(width, height)
            new_size = (max(crop_w, round(width * scale_x)), max(crop_h, round(height * scale_y)))
            scale_x, scale_y = new_size[0] / width, new_size[1] / height
            left = (new_size[0] - crop_w) // 2
            top = (new_size[1] - crop_h) // 2
            # Resize only the part of the photo that the crop keeps: the same pixels as resizing the whole
            # photo and cropping, but memory stays that of the crop whatever the aspect ratio (a 1x6000
            # strip would otherwise be resized to 256x1,536,000 pixels first: gigabytes).
            source_box = (
                left / scale_x,
                top / scale_y,
                min(float(width), (left + crop_w) / scale_x),
                min(float(height), (top + crop_h) / scale_y),
            )
            resized = image.resize((crop_w, crop_h), Image.Resampling.BILINEAR, box=source_box)
        pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32).copy()).permute(2, 0, 1)
        tensor = self.normalize(pixels.unsqueeze(0))
        box = (left / scale_x, top / scale_y, (left + crop_w) / scale_x, (top + crop_h) / scale_y)
        return tensor, Geometry(original_size=(width, height), crop_box=box)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels ``(N, 3, H, W)`` in 0..255 -> model input space."""
        mean, std = self._stats(pixels)
        return (pixels - mean) / std

    def denormalize(self, tensor: torch.Tensor) -> torch.Tensor:
        """Model input ``(N, 3, H, W)`` -> float pixels in 0..255 (not clipped)."""
        mean, std = self._stats(tensor)
        return tensor * std + mean

    def to_uint8(self, tensor: torch.Tensor) -> np.ndarray:
        """Model input ``(N, 3, H, W)`` (or ``(3, H, W)``) -> ``uint8`` RGB ``(N, H, W, 3)`` (or ``(H, W, 3)``)."""
        batched = tensor.detach().cpu().float()
        single = batched.dim() == 3
        if single:
            batched = batched.unsqueeze(0)
        pixels = self.denormalize(batched).round().clamp(0, 255).to(torch.uint8)
        array = pixels.permute(0, 2, 3, 1).numpy()
        return array[0] if single else array

    def quantize(self, tensor: torch.Tensor) -> torch.Tensor:
        """Model input ``(N, 3, H, W)`` -> the same as 8-bit pixels read back (what a saved PNG scores)."""
        return self.quantizer(tensor)(tensor)

    def quantizer(self, like: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """:meth:`quantize` for tensors of ``like``'s device and type, with the statistics moved there once:
        no host-to-device copy per call, so it can run inside a recorded CUDA graph."""
        mean, std = self._stats(like)

        def quantize(tensor: torch.Tensor) -> torch.Tensor:
            return ((tensor * std + mean).round_().clamp_(0, 255) - mean) / std

        return quantize

    def black(self, like: torch.Tensor) -> torch.Tensor:
        """Black pixels in model input space, shaped like ``like``."""
        return self.normalize(torch.zeros_like(like, dtype=torch.float32)).to(like.dtype)

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
        return mean, std


def paste_back(values: np.ndarray, geometry: Geometry, fill: float | np.ndarray) -> np.ndarray:
    """Resample a model-resolution map onto the original photo.

    Parameters
    ----------
    values
        ``(h, w)`` or ``(h, w, C)`` float array at model resolution.
    geometry
        Where the model's input was cropped from.
    fill
        Value for original pixels the model never saw (outside the crop): a scalar, or an array of
        the original photo's shape ``(H0, W0[, C])``.

    Returns
    -------
    numpy.ndarray
        ``(H0, W0)`` or ``(H0, W0, C)`` float32, bilinear inside the crop box.
    """
    width, height = geometry.original_size
    left, top, right, bottom = geometry.crop_box
    data = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    channels_last = data.dim() == 3
    planes = data.permute(2, 0, 1) if channels_last else data.unsqueeze(0)
    box_w = max(1, round(right) - round(left))
    box_h = max(1, round(bottom) - round(top))
    resized = torch.nn.functional.interpolate(
        planes.unsqueeze(0), size=(box_h, box_w), mode="bilinear", align_corners=False
    )[0]
    shape = (height, width, planes.shape[0]) if channels_last else (height, width)
    out = np.empty(shape, dtype=np.float32)
    out[...] = fill
    x0, y0 = round(left), round(top)
    # The crop box can reach a fraction of a pixel past the border after rounding; clip both sides.
    sx0, sy0 = max(0, -x0), max(0, -y0)
    dx0, dy0 = max(0, x0), max(0, y0)
    dx1, dy1 = min(width, x0 + box_w), min(height, y0 + box_h)
    patch = resized[:, sy0 : sy0 + dy1 - dy0, sx0 : sx0 + dx1 - dx0]
    patch_np = patch.permute(1, 2, 0).numpy() if channels_last else patch[0].numpy()
    out[dy0:dy1, dx0:dx1] = patch_np
    return out
