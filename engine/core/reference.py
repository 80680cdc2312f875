"""What removed pixels become, and the per-image work done before optimising: the reference image ``r``
(blur, zero or black, docs/METHOD.md §1), the reference forward pass that records the defense's
bounds, and the score of the reference alone, with :class:`ReferenceCache` to reuse all three for the
same image."""

from __future__ import annotations

import collections
import hashlib
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import ConfigError
from engine.models.loading import ClassifierModel

from .defense import ActivationFilter
from .explanation import FGVisConfig


class ReferenceCache:
    """The per-image work :func:`engine.core.fgvis.explain` does before optimising -- the reference forward pass (the
    defense's bounds ``h(x)`` and the logits), the reference image ``r`` and its logits -- kept for the
    ``size`` most recently used (image, model, device, settings); ``size=0`` keeps nothing. (One image
    with several targets also keeps the pass on its copies: one entry more.)

    Keys hold the model object's identity and the image's bytes, so a changed image or a reloaded model
    is never served stale results; :meth:`clear` frees the memory (e.g. when the model changes).
    """

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._entries: collections.OrderedDict[tuple, object] = collections.OrderedDict()
        self.hits = 0

    def clear(self) -> None:
        self._entries.clear()

    def image_key(self, inputs: torch.Tensor) -> tuple | None:
        """What identifies the model input ``inputs`` (on the CPU) here: its shape and a hash of its bytes
        (~1 ms for 224x224), computed once per run; ``None`` when nothing is kept."""
        return _digest(inputs) if self.size > 0 else None

    def record(
        self,
        module: nn.Module,
        image: tuple | None,
        x: torch.Tensor,
        activation_filter,
        check: Callable[[object], None] | None = None,
    ) -> torch.Tensor:
        """Run (or reuse) the reference forward pass on ``x`` (``image``: its :meth:`image_key`) -> logits
        ``(N, K)``; ``activation_filter`` holds the bounds afterwards. ``check`` sees the model's output
        before anything is kept, and raises if it is not what the caller needs."""
        key = None if image is None else ("record", id(module), x.device, image, activation_filter.settings)

        def run() -> tuple:
            logits = reference_pass(module, x, activation_filter)
            if check is not None:
                check(logits)
            return logits, activation_filter.recorded

        logits, bounds = self._kept(key, run)
        activation_filter.restore(bounds)  # the bounds just recorded, or those kept
        return logits

    def reference(self, classifier: ClassifierModel, image: tuple | None, x: torch.Tensor, config: FGVisConfig):
        """The reference ``r`` for ``x`` (``image``: its :meth:`image_key`; see :func:`make_reference`),
        computed or reused."""
        key = None if image is None else ("reference", *_reference_key(classifier, image, x, config))
        reference = self._kept(key, lambda: make_reference(classifier, x, config))
        return reference if key is None else reference.clone()  # never sharing memory with the cache

    def reference_logits(
        self, classifier: ClassifierModel, image: tuple | None, x: torch.Tensor, config: FGVisConfig, removed
    ) -> torch.Tensor:
        """Logits ``(N, K)`` float32 of the reference alone, ``removed`` (``(N, C, H, W)``: the reference
        as the model scores it, e.g. as 8-bit pixels; what :meth:`reference` gave for ``x``, ``image``
        and ``config``, passed through the same scoring), computed or reused: re-runs on one image
        (another game, target or lambda) need no pass of their own."""
        key = None
        if image is not None:
            scoring = (id(classifier.module), classifier.preprocessing, classifier.pixel_input, config.quantize)
            key = ("reference logits", *scoring, *_reference_key(classifier, image, x, config))
        logits = self._kept(key, lambda: _scored(classifier.module, removed))
        return logits if key is None else logits.clone()

    def _kept(self, key: tuple | None, make: Callable[[], object]):
        """The value kept under ``key``, or ``make()``'s, then kept (``key`` ``None``: nothing is kept)."""
        if key is None:
            return make()
        value = self._get(key)
        if value is None:
            value = make()
            self._put(key, value)
        return value

    def _get(self, key: tuple):
        if key not in self._entries:
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return self._entries[key]

    def _put(self, key: tuple, value) -> None:
        self._entries[key] = value
        while len(self._entries) > 3 * self.size:  # a record, a reference and its logits per image
            self._entries.popitem(last=False)


def _reference_key(classifier: ClassifierModel, image: tuple, x: torch.Tensor, config: FGVisConfig) -> tuple:
    """What the reference of ``x`` (``image``: its :meth:`ReferenceCache.image_key`) depends on."""
    black = classifier.preprocessing if config.reference == "black" else None
    return x.device, image, config.reference, config.blur_sigma, black


def _scored(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The model's logits ``(N, K)`` float32 on ``inputs``, without a gradient."""
    with torch.no_grad():
        return module(inputs).float()


def _digest(tensor: torch.Tensor) -> tuple:
    """Identity of a CPU tensor's values: shape and a BLAKE2 hash of its bytes (~1 ms for a 224x224 image)."""
    data = tensor.detach().contiguous().numpy().tobytes()
    return tuple(tensor.shape), hashlib.blake2b(data, digest_size=16).hexdigest()


def reference_pass(module: nn.Module, x: torch.Tensor, activation_filter: ActivationFilter) -> torch.Tensor:
    """The reference forward pass on ``x``: -> logits; ``activation_filter`` holds the bounds afterwards."""
    with torch.no_grad(), activation_filter.recording(module):
        return module(x)


def make_reference(classifier: ClassifierModel, x: torch.Tensor, config: FGVisConfig) -> torch.Tensor:
    """The reference ``r`` ``(N, C, H, W)`` that removed pixels take, in the model's input space."""
    if config.reference == "zero":
        return torch.zeros_like(x)
    if config.reference == "black":
        if x.shape[1] != 3:
            raise ConfigError(f"the black reference needs an RGB input, this one has {x.shape[1]} channels")
        return classifier.preprocessing.black(x)
    return gaussian_blur(x, config.blur_sigma)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` with reflected borders (radius ``3*sigma``, capped by
    the image size)."""
    height, width = images.shape[2:]
    radius = max(1, min(math.ceil(3 * sigma), height - 1, width - 1))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    padded = F.pad(images, (radius, radius, 0, 0), mode="reflect")
    blurred = F.conv2d(padded, horizontal, groups=channels)
    padded = F.pad(blurred, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(padded, vertical, groups=channels)
