"""Plain data that crosses between the worker thread and the GUI thread: numpy arrays and numbers only
(copies), never live tensors or Qt objects."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine import Explanation, FGVisConfig, Prediction

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


@dataclass
class ImageRecord:
    """One open image. ``pixels``: ``(H, W, 3)`` uint8 RGB after EXIF orientation.

    ``display`` is the same picture as ``(H, W)`` uint32 ``0xFFRRGGBB``, prepared in the worker for the
    viewer. ``predictions`` and ``crop_box`` belong to the model generation ``model_generation`` (``None``
    until the worker has looked at the image). ``crop_box`` is ``(left, top, right, bottom)`` in photo
    pixels: where the model's input was cut from."""

    id: int
    path: Path | None
    name: str
    pixels: np.ndarray
    display: np.ndarray | None = None
    predictions: list[Prediction] | None = None
    crop_box: tuple[float, float, float, float] | None = None
    model_generation: int = -1
    results: list[ResultRecord] = field(default_factory=list)


@dataclass(frozen=True)
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

    def title(self) -> str:
        return f"{self.image_name}: {self.target_label} ({self.game}, defense {'on' if self.defense else 'off'})"


@dataclass(frozen=True)
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


@dataclass
class ResultRecord:
    """A finished (or cancelled) job, at model resolution ``(h, w)``.

    Attributes
    ----------
    mask
        ``(3, h, w)`` float32 in 0..1, 1 = pixel kept.
    evidence
        ``(h, w)`` float32 in 0..1: ``mean_c m`` for preservation, ``1 - mean_c m`` for deletion.
    explanation_rgb
        ``(h, w, 3)`` uint8: the explanation ``e`` exactly as the model saw it.
    deletion_rgb
        ``(h, w, 3)`` uint8: ``(1 - m) * x``, what the mask removes.
    crop_box
        ``(left, top, right, bottom)`` of the model input in photo pixels: where the maps belong.
    history_prob, history_mask
        ``(steps,)`` target probability and mask mean per step.
    """

    id: int
    job: JobSpec
    mask: np.ndarray
    evidence: np.ndarray
    explanation_rgb: np.ndarray
    deletion_rgb: np.ndarray
    crop_box: tuple[float, float, float, float]
    prob_original: float
    prob_explanation: float
    top1_explanation: int
    top1_explanation_label: str
    goal_met: bool
    lambda_: float
    steps: int
    cancelled: bool
    wall_time_s: float
    device: str
    model_name: str
    history_prob: np.ndarray
    history_mask: np.ndarray
    summary: dict
    notes: str = ""

    @property
    def mask_mean(self) -> float:
        return float(self.mask.mean())

    @property
    def status(self) -> str:
        if self.cancelled:
            return "cancelled (partial)"
        return "goal met" if self.goal_met else "goal not met"

    def title(self) -> str:
        return f"#{self.id} {self.job.target_label} · {self.job.game} · defense {'on' if self.job.defense else 'off'}"

    @classmethod
    def from_explanation(cls, job: JobSpec, result: Explanation, labels: list[str]) -> ResultRecord:
        """Copy item 0 of an engine result into plain arrays."""
        mask = result.mask[0].numpy().astype(np.float32, copy=True)
        pixels = result.preprocessing.denormalize(result.input[:1])[0].permute(1, 2, 0).numpy()
        kept = mask.transpose(1, 2, 0)
        deletion = np.clip(np.round((1.0 - kept) * pixels), 0, 255).astype(np.uint8)
        geometry = result.geometries[0]
        top1 = int(result.top1_explanation[0])
        return cls(
            id=next_id(),
            job=job,
            mask=mask,
            evidence=result.evidence_map(0).copy(),
            explanation_rgb=result.explanation_image(0).copy(),
            deletion_rgb=deletion,
            crop_box=geometry.crop_box,
            prob_original=float(result.prob_original[0]),
            prob_explanation=float(result.prob_explanation[0]),
            top1_explanation=top1,
            top1_explanation_label=labels[top1] if top1 < len(labels) else f"class {top1}",
            goal_met=bool(result.goal_met[0]),
            lambda_=float(result.lambda_[0]),
            steps=result.steps,
            cancelled=result.cancelled,
            wall_time_s=result.wall_time_s,
            device=result.device,
            model_name=result.model_name,
            history_prob=np.array([float(s.target_prob[0]) for s in result.history], dtype=np.float32),
            history_mask=np.array([float(s.mask_mean[0]) for s in result.history], dtype=np.float32),
            summary=result.summary(0),
        )
