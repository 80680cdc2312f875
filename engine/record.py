"""One explained item as plain data (numpy arrays, numbers, strings): what export, reports, batch runs
and saved sessions store, and what the GUI shows. Built from an :class:`~engine.types.Explanation`."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np
import torch

from .models import ClassifierModel
from .types import Explanation, FGVisConfig

#: Arrays of a record, by name, as stored in sessions.
ARRAY_FIELDS = ("mask", "evidence", "explanation_rgb", "deletion_rgb", "input_rgb")
HISTORY_KEYS = ("target_prob", "mask_mean", "blocked_fraction", "lambda")


@dataclass(kw_only=True)
class ExplanationRecord:
    """Item ``index`` of an explanation run, at model resolution ``(h, w)``.

    Attributes
    ----------
    mask
        ``(3, h, w)`` float32 in 0..1, 1 = pixel kept.
    evidence
        ``(h, w)`` float32 in 0..1: ``mean_c m`` for preservation, ``1 - mean_c m`` for deletion.
    explanation_rgb, deletion_rgb, input_rgb
        ``(h, w, 3)`` uint8: the explanation ``e`` exactly as the model saw it, ``(1 - m) * x`` (what the
        mask removes) and the model's input ``x``.
    crop_box
        ``(left, top, right, bottom)`` of the model input in photo pixels (``None`` without a photo).
    top5_original, top5_explanation
        ``[(class index, name, probability), ...]`` on ``x`` and on ``e``.
    prob_rescored
        Target probability on the 8-bit explanation picture (what its lossless PNG holds), scored again
        when exported.
    history
        Per step: ``target_prob``, ``mask_mean``, ``blocked_fraction`` (the adversarial-evidence
        monitor: units whose gradient the defense blocked; NaN on steps it did not count) and ``lambda``;
        ``(steps,)`` float32 each.
    warnings
        What the engine had to do differently (``Explanation.warnings``: e.g. split the batch after a GPU
        out-of-memory, or run without the CUDA graph).
    """

    image_name: str
    image_path: str | None = None
    image_sha256: str | None = None
    model_name: str
    weights_sha256: str | None = None
    target: int
    target_label: str
    game: str
    defense: bool
    config: FGVisConfig
    mask: np.ndarray
    evidence: np.ndarray
    explanation_rgb: np.ndarray
    deletion_rgb: np.ndarray
    input_rgb: np.ndarray
    crop_box: tuple[float, float, float, float] | None
    prob_original: float
    prob_explanation: float
    top1_explanation: int
    top1_explanation_label: str
    top5_original: list = field(default_factory=list)
    top5_explanation: list = field(default_factory=list)
    goal_met: bool
    lambda_: float
    steps: int
    cancelled: bool
    wall_time_s: float
    device: str
    history: dict = field(default_factory=dict)
    created: str = field(default_factory=lambda: _dt.datetime.now().astimezone().isoformat(timespec="seconds"))
    prob_rescored: float | None = None
    notes: str = ""
    warnings: list = field(default_factory=list)

    @property
    def mask_mean(self) -> float:
        return float(self.mask.mean())

    @property
    def survives_8bit(self) -> bool:
        """Whether the explanation still works as an 8-bit picture: its re-score is within
        ``max(0.02, 0.1 * p(x))`` of ``p(e)``. Deletion masks just below 1 can change the image by less
        than one 8-bit level and lose their effect once saved (measured: rocket.jpg, p(e) 0.041 -> 0.407)."""
        if self.prob_rescored is None:
            return True
        return abs(self.prob_rescored - self.prob_explanation) <= max(0.02, 0.1 * self.prob_original)

    @property
    def status(self) -> str:
        if self.cancelled:
            return "cancelled (partial)"
        status = "goal met" if self.goal_met else "goal not met"
        return status if self.survives_8bit else status + ", fails the 8-bit check"

    @property
    def lambda_policy(self) -> str:
        return "automatic" if self.config.lambda_ is None else "fixed"

    @classmethod
    def from_explanation(
        cls, result: Explanation, index: int, model: ClassifierModel, *, image_name: str,
        image_path: str | None = None, image_sha256: str | None = None, **extra,
    ) -> ExplanationRecord:  # fmt: skip
        """Copy item ``index`` of ``result``; ranks the classes on ``x`` and ``e`` with ``model``."""
        mask = result.mask[index].numpy().astype(np.float32, copy=True)
        pixels = result.preprocessing.denormalize(result.input[index : index + 1])[0].permute(1, 2, 0).numpy()
        input_rgb = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
        deletion = np.clip(np.round((1.0 - mask.transpose(1, 2, 0)) * pixels), 0, 255).astype(np.uint8)
        geometry = result.geometries[index] if index < len(result.geometries) else None
        top1 = int(result.top1_explanation[index])
        explanation_rgb = result.explanation_image(index).copy()
        # One forward pass ranks the classes on x and e and re-scores e as an 8-bit picture.
        probs = model.probabilities(torch.cat([
            result.input[index : index + 1], result.explanation[index : index + 1], _as_input(model, explanation_rgb),
        ]))  # fmt: skip
        target = int(result.target[index])
        return cls(
            image_name=image_name, image_path=image_path, image_sha256=image_sha256,
            model_name=model.name, weights_sha256=model.weights_sha256,
            target=target, target_label=result.target_labels[index],
            game=result.game, defense=result.defense, config=result.config,
            mask=mask, evidence=result.evidence_map(index).copy(),
            explanation_rgb=explanation_rgb, deletion_rgb=deletion, input_rgb=input_rgb,
            prob_rescored=float(probs[2, target]),
            crop_box=tuple(geometry.crop_box) if geometry is not None else None,
            prob_original=float(result.prob_original[index]),
            prob_explanation=float(result.prob_explanation[index]),
            top1_explanation=top1, top1_explanation_label=model.label(top1),
            top5_original=_top5(probs[0], model), top5_explanation=_top5(probs[1], model),
            goal_met=bool(result.goal_met[index]), lambda_=float(result.lambda_[index]), steps=result.steps,
            cancelled=result.cancelled, wall_time_s=result.wall_time_s, device=result.device,
            history={
                key: np.array([float(getattr(s, attr)[index]) for s in result.history], dtype=np.float32)
                for key, attr in zip(HISTORY_KEYS, ("target_prob", "mask_mean", "blocked_fraction", "lambda_"),
                                     strict=True)
            },
            warnings=list(result.warnings),
            **extra,
        )  # fmt: skip

    def metadata(self) -> dict:
        """JSON-ready facts (everything except the arrays)."""
        blocked_last, blocked_max = monitor_summary(self.history.get("blocked_fraction", np.zeros(0)))
        return {
            "image": self.image_name,
            "image_path": self.image_path,
            "image_sha256": self.image_sha256,
            "model": self.model_name,
            "weights_sha256": self.weights_sha256,
            "target": self.target,
            "target_label": self.target_label,
            "game": self.game,
            "defense": self.defense,
            "prob_original": self.prob_original,
            "prob_explanation": self.prob_explanation,
            "prob_rescored": self.prob_rescored,
            "top1_explanation": self.top1_explanation,
            "top1_explanation_label": self.top1_explanation_label,
            "top5_original": [list(row) for row in self.top5_original],
            "top5_explanation": [list(row) for row in self.top5_explanation],
            "mask_mean": self.mask_mean,
            "lambda": self.lambda_,
            "lambda_policy": self.lambda_policy,
            "goal_met": self.goal_met,
            "survives_8bit": self.survives_8bit,
            "steps": self.steps,
            "cancelled": self.cancelled,
            "wall_time_s": self.wall_time_s,
            "device": self.device,
            "crop_box": list(self.crop_box) if self.crop_box is not None else None,
            "blocked_fraction_last": blocked_last,
            "blocked_fraction_max": blocked_max,
            "score_inflation": self.prob_explanation - self.prob_original if self.game == "preserve" else None,
            "created": self.created,
            "notes": self.notes,
            "warnings": list(self.warnings),
            "config": self.config.to_dict(),
        }

    def arrays(self) -> dict[str, np.ndarray]:
        out = {name: getattr(self, name) for name in ARRAY_FIELDS}
        out.update({f"history_{key}": value for key, value in self.history.items()})
        return out

    @classmethod
    def from_parts(cls, meta: dict, arrays: dict[str, np.ndarray], **extra) -> ExplanationRecord:
        """Inverse of :meth:`metadata` + :meth:`arrays` (sessions). Raises ``KeyError``/``TypeError`` on
        incomplete data."""
        history = {key: np.asarray(arrays[f"history_{key}"], np.float32) for key in HISTORY_KEYS
                   if f"history_{key}" in arrays}  # fmt: skip
        return cls(
            image_name=meta["image"], image_path=meta.get("image_path"), image_sha256=meta.get("image_sha256"),
            model_name=meta["model"], weights_sha256=meta.get("weights_sha256"),
            target=int(meta["target"]), target_label=meta["target_label"], game=meta["game"],
            defense=bool(meta["defense"]), config=_stored_config(meta["config"], meta["game"]),
            **{name: np.asarray(arrays[name]) for name in ARRAY_FIELDS},
            crop_box=tuple(meta["crop_box"]) if meta.get("crop_box") else None,
            prob_original=float(meta["prob_original"]), prob_explanation=float(meta["prob_explanation"]),
            top1_explanation=int(meta["top1_explanation"]), top1_explanation_label=meta["top1_explanation_label"],
            top5_original=[tuple(row) for row in meta.get("top5_original", [])],
            top5_explanation=[tuple(row) for row in meta.get("top5_explanation", [])],
            goal_met=bool(meta["goal_met"]), lambda_=float(meta["lambda"]), steps=int(meta["steps"]),
            cancelled=bool(meta["cancelled"]), wall_time_s=float(meta["wall_time_s"]), device=meta["device"],
            history=history, created=meta.get("created", ""), prob_rescored=meta.get("prob_rescored"),
            notes=meta.get("notes", ""), warnings=[str(w) for w in meta.get("warnings", [])], **extra,
        )  # fmt: skip


def score_pixels(model: ClassifierModel, pixels: np.ndarray, target: int) -> float:
    """Target probability on an 8-bit picture at the model's input size, ``(h, w, 3)`` uint8: the test
    that the explanation works as an ordinary image file (PNG is lossless, so this is its score)."""
    return float(model.probabilities(_as_input(model, pixels))[0, target])


def _as_input(model: ClassifierModel, pixels: np.ndarray) -> torch.Tensor:
    """``(h, w, 3)`` uint8 at the model's input size -> its input tensor ``(1, 3, h, w)``."""
    tensor = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
    return model.preprocessing.normalize(tensor)


def _top5(probs: torch.Tensor, model: ClassifierModel) -> list[tuple[int, str, float]]:
    values, indices = probs.topk(min(5, probs.numel()))
    return [(int(i), model.label(int(i)), float(v)) for v, i in zip(values, indices, strict=True)]


def monitor_summary(blocked: np.ndarray) -> tuple[float, float]:
    """``(last, max)`` of a ``blocked_fraction`` history over the steps the monitor counted (the others
    are NaN; see ``FGVisConfig.monitor_every``); ``(0, 0)`` when none did."""
    counted = np.asarray(blocked, dtype=np.float64)
    counted = counted[np.isfinite(counted)]
    return (float(counted[-1]), float(counted.max())) if counted.size else (0.0, 0.0)


def _stored_config(values: dict, game: str) -> FGVisConfig:
    """The :class:`FGVisConfig` a stored result was made with. Results saved before the settings
    ``sparsity`` and ``binarize`` existed (2026-12) ran the proximal loop without binarisation, with the
    learning rates of that time."""
    if "sparsity" not in values:
        old_lr = {"preserve": 0.01, "delete": 0.02}.get(game)
        values = {**values, "sparsity": "proximal", "binarize": False, "lr": values.get("lr") or old_lr}
    return FGVisConfig(**values)
