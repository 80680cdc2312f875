"""Plain data that crosses between the worker thread and the GUI thread: numpy arrays and numbers only
(copies), never live tensors or Qt objects.

Records that hold arrays compare by identity (``eq=False``): the window keeps them in lists and asks
``record in records``, and a field-wise ``==`` over numpy arrays is ambiguous."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from engine import FGVisConfig, Prediction
from engine.results.record import ExplanationRecord

_ids = itertools.count(1)


def next_id() -> int:
    """A process-wide unique, increasing id for images, jobs and results."""
    return next(_ids)


@dataclass(frozen=True)
class ModelSpec:
    """What to load: the built-in model, a torchvision architecture with a weights file, or TorchScript."""

    name: str = "efficientnet_lite0"
    weights: Path | None = None
    torchscript: Path | None = None
    num_classes: int | None = None
    labels: Path | None = None

    def describe(self) -> str:
        if self.torchscript:
            return f"TorchScript {self.torchscript.name}"
        return self.name + (f" + {self.weights.name}" if self.weights else "")


@dataclass(frozen=True)
class ModelInfo:
    """What the GUI needs to know about the loaded model."""

    name: str
    labels: list[str]
    weights_sha256: str | None
    device: str
    input_size: tuple[int, int]
    scripted: bool
    generation: int


@dataclass(eq=False)
class ImageRecord:
    """One open image. ``pixels``: ``(H, W, 3)`` uint8 RGB after EXIF orientation.

    ``display`` is the same picture as ``(H, W)`` uint32 ``0xFFRRGGBB``, prepared in the worker for the
    viewer. ``predictions`` (top-5), ``probabilities`` (``(num_classes,)`` float32) and ``crop_box``
    belong to the model generation ``model_generation`` (``None`` until the worker has looked at the
    image). ``crop_box`` is ``(left, top, right, bottom)`` in photo
    pixels: where the model's input was cut from."""

    id: int
    path: Path | None
    name: str
    pixels: np.ndarray
    display: np.ndarray | None = None
    sha256: str | None = None
    notes: str = ""
    predictions: list[Prediction] | None = None
    probabilities: np.ndarray | None = None
    crop_box: tuple[float, float, float, float] | None = None
    model_generation: int = -1
    results: list[ResultRecord] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class JobSpec:
    """One optimisation asked for by the user: one image, one class, one game."""

    id: int
    image_id: int
    image_name: str
    pixels: np.ndarray
    target: int
    target_label: str
    game: str
    defense: bool
    config: FGVisConfig
    image_path: Path | None = None
    image_sha256: str | None = None

    def title(self) -> str:
        return f"{self.image_name}: {self.target_label} ({self.game}, defense {'on' if self.defense else 'off'})"


@dataclass(frozen=True, eq=False)
class JobProgress:
    """One throttled progress report. ``preview``: evidence ``(h, w)`` float32 in 0..1 (small)."""

    job_id: int
    step: int
    total: int
    target_prob: float
    mask_mean: float
    elapsed_s: float
    preview: np.ndarray | None

    @property
    def eta_s(self) -> float:
        """Seconds left if the run uses its whole budget (it may stop earlier when converged)."""
        return self.elapsed_s / max(self.step, 1) * (self.total - self.step)


@dataclass(kw_only=True, eq=False)
class ResultRecord(ExplanationRecord):
    """A finished (or cancelled) job: the engine's :class:`~engine.results.record.ExplanationRecord` plus the
    job that asked for it and an id unique in this process.

    Two results are the same only if they are the same object: the same job run twice gives two results
    with equal fields, and the inherited field-wise ``==`` would compare numpy masks (ambiguous)."""

    id: int
    job: JobSpec

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def title(self) -> str:
        return f"{self.target_label} · {self.game} · defense {'on' if self.defense else 'off'}"

    @classmethod
    def from_record(cls, record: ExplanationRecord, job: JobSpec) -> ResultRecord:
        """Wrap a record read back from a session."""
        values = {f.name: getattr(record, f.name) for f in fields(ExplanationRecord)}
        return cls(**values, id=next_id(), job=job)


def describe_pixel(image: ImageRecord, result: ResultRecord | None, x: float, y: float) -> str:
    """What the status bar says about photo position ``(x, y)``: the pixel's RGB and, with a ``result``,
    its mask (per channel) and evidence there; ``""`` outside the photo."""
    col, row = int(x), int(y)
    height, width = image.pixels.shape[:2]
    if x < 0 or y < 0 or not (0 <= col < width and 0 <= row < height):
        return ""
    r, g, b = (int(v) for v in image.pixels[row, col])
    text = f"x {col}, y {row}   RGB ({r}, {g}, {b})"
    if result is not None and result.crop_box is not None:
        left, top, right, bottom = result.crop_box
        h, w = result.evidence.shape
        u, v = int((x - left) / (right - left) * w), int((y - top) / (bottom - top) * h)
        if 0 <= u < w and 0 <= v < h:
            m = result.mask[:, v, u]
            text += f"   mask ({m[0]:.2f}, {m[1]:.2f}, {m[2]:.2f})   evidence {result.evidence[v, u]:.3f}"
        else:
            text += "   outside the model's crop"
    return text
