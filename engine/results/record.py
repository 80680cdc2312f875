"""One explained item as plain data (numpy arrays, numbers, strings): what export, reports, batch runs
and saved sessions store, and what the GUI shows. Built from an :class:`~engine.core.explanation.Explanation`."""

from __future__ import annotations

import datetime as _dt
import functools
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Protocol, overload

import numpy as np
import torch

from engine.core.explanation import GAMES, Explanation, FGVisConfig, Game
from engine.errors import ConfigError
from engine.models import images as _images
from engine.models.loading import ClassifierModel

#: Arrays of a record, by name, as stored in sessions.
ARRAY_FIELDS = ("mask", "evidence", "explanation_rgb", "deletion_rgb", "input_rgb")
HISTORY_KEYS = ("target_prob", "mask_mean", "blocked_fraction", "lambda")

# Limits on a record read back from a file (:meth:`ExplanationRecord.from_parts`, sessions). Everything a
# file declares is checked against them before anything is allocated for it; raise one here if a real
# record needs more (the README's "Bad input" section lists them).
#: Largest height or width of a record's arrays: the model's input size, in pixels.
MAX_ARRAY_SIDE = 2048
#: Most entries of one per-step history array (one per optimisation step).
MAX_HISTORY_STEPS = 1_000_000
#: Longest note or warning, in characters.
MAX_TEXT_CHARS = 100_000
#: Longest name, path, class label, checksum, date or device string, in characters.
MAX_NAME_CHARS = 4096
#: Most items of a stored list (rows of a top-5 table, warnings).
MAX_LIST_ITEMS = 1000
#: Largest magnitude of a stored whole number (class indices, steps, seeds): a signed 64-bit integer.
MAX_INTEGER = 2**63 - 1


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
    game: Game
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
    #: p(target) on the reference alone (every pixel removed); None in records saved before 2026-12-02.
    prob_reference: float | None = None
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
        cls,
        result: Explanation,
        index: int,
        model: ClassifierModel,
        *,
        image_name: str,
        image_path: str | None = None,
        image_sha256: str | None = None,
        **extra,
    ) -> ExplanationRecord:
        """Copy item ``index`` of ``result``; ranks the classes on ``x`` and ``e`` with ``model``."""
        mask = result.mask[index].numpy().astype(np.float32, copy=True)
        pixels = result.preprocessing.denormalize(result.input[index : index + 1])[0].permute(1, 2, 0).numpy()
        input_rgb = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
        deletion = np.clip(np.round((1.0 - mask.transpose(1, 2, 0)) * pixels), 0, 255).astype(np.uint8)
        geometry = result.geometries[index] if index < len(result.geometries) else None
        top1 = int(result.top1_explanation[index])
        explanation_rgb = result.explanation_image(index).copy()
        # One forward pass ranks the classes on x and e and re-scores e as an 8-bit picture.
        probs = model.probabilities(
            torch.cat(
                [
                    result.input[index : index + 1],
                    result.explanation[index : index + 1],
                    _as_input(model, explanation_rgb),
                ]
            )
        )
        target = int(result.target[index])
        return cls(
            image_name=image_name,
            image_path=image_path,
            image_sha256=image_sha256,
            model_name=model.name,
            weights_sha256=model.weights_sha256,
            target=target,
            target_label=result.target_labels[index],
            game=result.game,
            defense=result.defense,
            config=result.config,
            mask=mask,
            evidence=result.evidence_map(index).copy(),
            explanation_rgb=explanation_rgb,
            deletion_rgb=deletion,
            input_rgb=input_rgb,
            prob_rescored=float(probs[2, target]),
            crop_box=geometry.crop_box if geometry is not None else None,
            prob_original=float(result.prob_original[index]),
            prob_explanation=float(result.prob_explanation[index]),
            prob_reference=float(result.prob_reference[index]),
            top1_explanation=top1,
            top1_explanation_label=model.label(top1),
            top5_original=_top5(probs[0], model),
            top5_explanation=_top5(probs[1], model),
            goal_met=bool(result.goal_met[index]),
            lambda_=float(result.lambda_[index]),
            steps=result.steps,
            cancelled=result.cancelled,
            wall_time_s=result.wall_time_s,
            device=result.device,
            history={
                key: np.array([float(getattr(s, attr)[index]) for s in result.history], dtype=np.float32)
                for key, attr in zip(
                    HISTORY_KEYS, ("target_prob", "mask_mean", "blocked_fraction", "lambda_"), strict=True
                )
            },
            warnings=list(result.warnings),
            **extra,
        )

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
            "prob_reference": self.prob_reference,
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
    def from_parts(cls, meta: dict, arrays: Mapping[str, np.ndarray], **extra) -> ExplanationRecord:
        """Inverse of :meth:`metadata` + :meth:`arrays` (sessions).

        Raises
        ------
        ValueError
            ``meta`` or ``arrays`` do not hold a record: a field missing or of the wrong type, a number
            out of range or not finite, text or a list over its limit, an invalid stored config, arrays of
            the wrong shape, type or size (see :func:`check_metadata`, :func:`check_arrays`). The message
            names the field.
        """
        check_metadata(meta)
        check_arrays(arrays)
        config = stored_config(meta["config"], meta["game"])
        values = {name: np.asarray(arrays[name]) for name in ARRAY_FIELDS}
        for name in ("mask", "evidence"):
            values[name] = values[name].astype(np.float32, copy=False)
            if not np.isfinite(values[name]).all():
                raise ValueError(f"{name} has values that are not finite numbers")
        history = {
            key: np.asarray(arrays[f"history_{key}"], np.float32) for key in HISTORY_KEYS if f"history_{key}" in arrays
        }
        return cls(
            image_name=meta["image"],
            image_path=meta.get("image_path"),
            image_sha256=meta.get("image_sha256"),
            model_name=meta["model"],
            weights_sha256=meta.get("weights_sha256"),
            target=int(meta["target"]),
            target_label=meta["target_label"],
            game=meta["game"],
            defense=bool(meta["defense"]),
            config=config,
            **values,
            crop_box=check_crop_box(meta.get("crop_box")),
            prob_original=float(meta["prob_original"]),
            prob_explanation=float(meta["prob_explanation"]),
            top1_explanation=int(meta["top1_explanation"]),
            top1_explanation_label=meta["top1_explanation_label"],
            top5_original=[tuple(row) for row in meta.get("top5_original", [])],
            top5_explanation=[tuple(row) for row in meta.get("top5_explanation", [])],
            goal_met=bool(meta["goal_met"]),
            lambda_=float(meta["lambda"]),
            steps=int(meta["steps"]),
            cancelled=bool(meta["cancelled"]),
            wall_time_s=float(meta["wall_time_s"]),
            device=meta["device"],
            history=history,
            created=meta.get("created", ""),
            prob_rescored=meta.get("prob_rescored"),
            prob_reference=meta.get("prob_reference"),
            notes=meta.get("notes", ""),
            warnings=[str(w) for w in meta.get("warnings", [])],
            **extra,
        )


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


def stored_config(values: dict, game: str) -> FGVisConfig:
    """The :class:`FGVisConfig` a stored result was made with. Results saved before the settings
    ``sparsity`` and ``binarize`` existed (2026-12) ran the proximal loop without binarisation, with the
    learning rates of that time; those saved before ``quantize`` (2026-12-02) scored ``e`` in float.
    Raises ``ValueError`` for an unknown setting, a value of the wrong type or out of range (including what
    :class:`FGVisConfig` itself refuses)."""
    if not isinstance(values, dict):
        raise ValueError(f"config must be an object of settings, not {describe(values)}")
    kinds = config_types()
    for key, value in values.items():
        if key not in kinds:
            raise ValueError(f"config has an unknown setting {quoted(key)}")
        _setting(value, f"config {key}", kinds[key])
    if "quantize" not in values:  # before 2026-12-02 explanations were scored in float
        values = {**values, "quantize": False}
    if "sparsity" not in values:
        old_lr = {"preserve": 0.01, "delete": 0.02}.get(game)
        values = {**values, "sparsity": "proximal", "binarize": False, "lr": values.get("lr") or old_lr}
    try:
        return FGVisConfig(**values)
    except ConfigError as exc:
        raise ValueError(f"invalid config: {exc}") from None


# ---------------------------------------------------------------- the schema of a stored record
def check_metadata(meta: object) -> dict:
    """``meta``, checked: raise ``ValueError`` naming the field unless it is a record's
    :meth:`~ExplanationRecord.metadata` as :meth:`~ExplanationRecord.from_parts` reads it: every field it
    reads present (or optional) and of its type, numbers finite and in range, text and lists within
    :data:`MAX_NAME_CHARS`, :data:`MAX_TEXT_CHARS` and :data:`MAX_LIST_ITEMS`. Fields it does not read are
    not checked. The stored config is checked by :meth:`~ExplanationRecord.from_parts`."""
    if not isinstance(meta, dict):
        raise ValueError(f"its metadata must be an object, not {describe(meta)}")

    def need(key: str):
        if key not in meta:
            raise ValueError(f"{key} is missing")
        return meta[key]

    for key in ("image", "model", "target_label", "top1_explanation_label", "device"):
        check_text(need(key), key)
    for key in ("image_path", "image_sha256", "weights_sha256"):
        check_text(meta.get(key), key, optional=True)
    check_text(meta.get("created", ""), "created")
    check_text(meta.get("notes", ""), "notes", MAX_TEXT_CHARS)
    if need("game") not in GAMES:
        raise ValueError(f"game must be one of {', '.join(GAMES)}, not {quoted(meta['game'])}")
    for key in ("defense", "goal_met", "cancelled"):
        if not isinstance(need(key), bool):
            raise ValueError(f"{key} must be true or false, not {describe(meta[key])}")
    for key in ("target", "top1_explanation", "steps"):
        check_integer(need(key), key, 0, MAX_INTEGER)
    for key in ("prob_original", "prob_explanation"):
        check_number(need(key), key, 0.0, 1.0)
    check_number(meta.get("prob_rescored"), "prob_rescored", 0.0, 1.0, optional=True)
    check_number(meta.get("prob_reference"), "prob_reference", 0.0, 1.0, optional=True)
    check_number(need("lambda"), "lambda", 0.0)
    check_number(need("wall_time_s"), "wall_time_s", 0.0)
    check_crop_box(meta.get("crop_box"))
    for key in ("top5_original", "top5_explanation"):
        for i, row in enumerate(_items(meta.get(key, []), key)):
            if not isinstance(row, list | tuple) or len(row) != 3:
                raise ValueError(f"{key} row {i + 1} must be [class index, name, probability], not {describe(row)}")
            check_integer(row[0], f"{key} row {i + 1}'s class index", 0, MAX_INTEGER)
            check_text(row[1], f"{key} row {i + 1}'s name")
            check_number(row[2], f"{key} row {i + 1}'s probability", 0.0, 1.0)
    for i, warning in enumerate(_items(meta.get("warnings", []), "warnings")):
        check_text(warning, f"warning {i + 1}", MAX_TEXT_CHARS)
    need("config")
    return meta


def check_crop_box(box: object) -> tuple[float, float, float, float] | None:
    """A stored ``crop_box`` as a tuple (``None`` or an empty list: ``None``). Raises ``ValueError`` unless
    it is 4 finite numbers ``left < right``, ``top < bottom``, all >= 0, inside the largest photo the
    engine opens (``right * bottom <= images.MAX_PIXELS``)."""
    if box is None or (isinstance(box, list | tuple) and not box):
        return None
    if not isinstance(box, list | tuple) or len(box) != 4:
        raise ValueError(f"crop_box must be 4 numbers (left, top, right, bottom), not {describe(box)}")
    left, top, right, bottom = (check_number(value, "crop_box", 0.0) for value in box)
    if not (left < right and top < bottom):
        raise ValueError(f"crop_box ({left:g}, {top:g}, {right:g}, {bottom:g}) is empty or inverted")
    if right * bottom > _images.MAX_PIXELS * (1 + 1e-6):
        raise ValueError(
            f"crop_box ({left:g}, {top:g}, {right:g}, {bottom:g}) reaches beyond the largest photo "
            f"({_images.MAX_PIXELS:,} pixels)"
        )
    return left, top, right, bottom


class ArrayHeader(Protocol):
    """What :func:`check_arrays` reads of an array: a numpy array, or what an ``.npy`` header declares."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> Any: ...  # np.dtype or anything np.dtype() takes


def check_arrays(arrays: Mapping[str, ArrayHeader]) -> tuple[int, int]:
    """``(h, w)`` of a record's arrays; raises ``ValueError`` naming the array unless they are a record's.

    ``arrays`` maps names to anything with ``shape`` and ``dtype`` (arrays, or what an ``.npy`` header
    declares, so a reader can check before loading): ``mask`` ``(3, h, w)`` and ``evidence`` ``(h, w)``
    floating point, ``explanation_rgb``, ``deletion_rgb``, ``input_rgb`` ``(h, w, 3)`` uint8, with
    ``1 <= h, w <= MAX_ARRAY_SIDE``; optional ``history_*`` one-dimensional floating point of at most
    :data:`MAX_HISTORY_STEPS`; no array of Python objects. Other names are ignored.
    """
    for name in ARRAY_FIELDS:
        if name not in arrays:
            raise ValueError(f"the {name} array is missing")
    wanted = {*ARRAY_FIELDS, *(f"history_{key}" for key in HISTORY_KEYS)}
    for name in wanted & set(arrays):
        if np.dtype(arrays[name].dtype).hasobject:
            raise ValueError(f"{name} holds Python objects (dtype {arrays[name].dtype}); only numbers are read")
    shape = tuple(arrays["mask"].shape)
    if len(shape) != 3 or shape[0] != 3:
        raise ValueError(f"mask has shape {shape_text(shape)}, expected (3, H, W)")
    height, width = shape[1:]
    if not (1 <= height <= MAX_ARRAY_SIDE and 1 <= width <= MAX_ARRAY_SIDE):
        raise ValueError(f"mask has shape {shape}: H and W must be 1 to {MAX_ARRAY_SIDE}")
    expected = {
        "mask": (3, height, width),
        "evidence": (height, width),
        "explanation_rgb": (height, width, 3),
        "deletion_rgb": (height, width, 3),
        "input_rgb": (height, width, 3),
    }
    for name, want in expected.items():
        array = arrays[name]
        if tuple(array.shape) != want:
            raise ValueError(
                f"{name} has shape {shape_text(array.shape)}, expected {want} (the mask's {height}x{width})"
            )
        kind = np.dtype(array.dtype)
        if name.endswith("_rgb") and kind != np.uint8:
            raise ValueError(f"{name} has dtype {kind}, expected uint8")
        if not name.endswith("_rgb") and kind.kind != "f":
            raise ValueError(f"{name} has dtype {kind}, expected floating point")
    for key in HISTORY_KEYS:
        history = arrays.get(f"history_{key}")
        if history is None:
            continue
        if len(history.shape) != 1 or history.shape[0] > MAX_HISTORY_STEPS or np.dtype(history.dtype).kind != "f":
            raise ValueError(
                f"history_{key} has shape {shape_text(history.shape)} and dtype {history.dtype}, expected "
                f"(steps,) floating point with at most {MAX_HISTORY_STEPS:,} steps"
            )
    return height, width


@functools.cache
def config_types() -> dict[str, Any]:
    """The type of each :class:`FGVisConfig` setting, by name: ``int``, ``float | None``, a ``Literal`` of
    names (:data:`~engine.core.explanation.Optimizer`...). Resolved from the annotations, which are text
    (``from __future__ import annotations``)."""
    hints = typing.get_type_hints(FGVisConfig)
    return {spec.name: hints[spec.name] for spec in fields(FGVisConfig)}


def _setting(value: object, what: str, kind: Any) -> None:
    """Check one stored config value against its :class:`FGVisConfig` type (:func:`config_types`). A named
    choice (a ``Literal``) must be text here; which names are valid :class:`FGVisConfig` itself says."""
    union = typing.get_origin(kind) in (typing.Union, types.UnionType)
    options = typing.get_args(kind) if union else (kind,)
    if value is None:
        if type(None) not in options:
            raise ValueError(f"{what} must not be null")
        return
    if bool in options:
        if not isinstance(value, bool):
            raise ValueError(f"{what} must be true or false, not {describe(value)}")
    elif int in options:
        check_integer(value, what, -MAX_INTEGER, MAX_INTEGER)
    elif float in options:
        check_number(value, what)
    elif str in options or any(typing.get_origin(option) is Literal for option in options):
        check_text(value, what)
    else:  # a setting of a new type: say how to check it here, or stored values would pass unchecked
        raise TypeError(f"no check for the config setting {what!r} of type {kind!r}")


@overload
def check_text(value: object, what: str, limit: int = ..., *, optional: Literal[False] = False) -> str: ...
@overload
def check_text(value: object, what: str, limit: int = ..., *, optional: bool) -> str | None: ...
def check_text(value: object, what: str, limit: int = MAX_NAME_CHARS, *, optional: bool = False) -> str | None:
    """``value`` if it is text of at most ``limit`` characters (or ``None`` when ``optional``); else
    ``ValueError`` naming ``what``."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text, not {describe(value)}")
    if len(value) > limit:
        raise ValueError(f"{what} has {len(value):,} characters, more than the limit of {limit:,}")
    return value


def check_integer(value: object, what: str, low: int, high: int) -> int:
    """``value`` if it is a whole number (not ``True``/``False``) in ``low..high``; else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be a whole number, not {describe(value)}")
    if not low <= value <= high:
        raise ValueError(f"{what} is {_number_text(value)}, outside {low:,}..{high:,}")
    return value


@overload
def check_number(
    value: object, what: str, low: float = ..., high: float = ..., *, optional: Literal[False] = False
) -> float: ...
@overload
def check_number(value: object, what: str, low: float = ..., high: float = ..., *, optional: bool) -> float | None: ...
def check_number(
    value: object, what: str, low: float = -math.inf, high: float = math.inf, *, optional: bool = False
) -> float | None:
    """``value`` as a float if it is a finite number in ``low..high`` (or ``None`` when ``optional``); else
    ``ValueError`` naming ``what`` (never an ``OverflowError``, however large an integer)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a number, not {describe(value)}")
    if isinstance(value, int) and abs(value) > 2**1000:
        raise ValueError(f"{what} is {_number_text(value)}, too large")
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{what} is {_number_text(value)}, expected a finite number in {low:g}..{high:g}")
    return float(value)


def _number_text(value: float) -> str:
    if isinstance(value, int) and abs(value) >= 10**30:  # str() refuses integers of over 4300 digits
        return f"a number of about {round(abs(value).bit_length() * math.log10(2)):,} digits"
    return repr(value)


def shape_text(shape: tuple[int, ...]) -> str:
    """An array shape for a message (a long one cut short)."""
    shape = tuple(shape)
    return str(shape) if len(shape) <= 8 else f"({', '.join(map(str, shape[:8]))}, … {len(shape)} sides)"


def _items(value: object, what: str) -> list:
    if not isinstance(value, list | tuple):
        raise ValueError(f"{what} must be a list, not {describe(value)}")
    if len(value) > MAX_LIST_ITEMS:
        raise ValueError(f"{what} has {len(value):,} items, more than the limit of {MAX_LIST_ITEMS:,}")
    return list(value)


def describe(value: object) -> str:
    """What a JSON value is, in words, for messages (the value itself when it is short)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return f"the number {_number_text(value)}"
    if isinstance(value, str):
        return f"the text {quoted(value)}"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def quoted(value: object, limit: int = 40) -> str:
    """``repr`` of a text cut to ``limit`` characters (other values in words): safe to put in a message."""
    if not isinstance(value, str):
        return describe(value)
    shown = repr(value[:limit])
    return shown if len(value) <= limit else shown[:-1] + "…" + shown[-1]
