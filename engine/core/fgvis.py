"""One FGVis explanation: preservation and deletion games (docs/METHOD.md §1-2).

``e = m*x + (1-m)*r`` with a full-resolution, per-channel mask ``m`` initialised to ones and clipped to
[0, 1] after every step.

* preserve: minimise ``-s(e) + lambda*mean(m)`` -- the smallest evidence that keeps the decision;
* delete:   minimise ``s(e) - lambda*mean(m)`` -- the smallest change that destroys it.

``s`` is the target's softmax probability (or its log, ``loss="ce"``). Gradients of ``s`` through the
network pass the defense's gradient filter (:mod:`engine.core.defense`); the sparsity term's gradient does
not. With automatic lambda each item gets its own lambda, raised after a step that met the game's goal
and lowered after one that did not, and the sparsest (preserve) or least-changed (delete) mask that met
the goal is returned. All items of a batch are optimised together in one batched loop.

This module is one call, top to bottom: :func:`explain` checks and prepares the inputs, runs the
reference pass (:mod:`.reference`), steps :class:`~engine.core.optimisation.Optimisation`, sharpens the
mask (:mod:`.binarize`), scores ``e`` (binarisation's own score of a 0/1 mask is reused) and the reference
alone, and returns an :class:`~engine.core.explanation.Explanation`;
a batch that runs out of CUDA memory is split and merged.
"""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from engine.errors import ConfigError, DefenseError, DeviceError, FGVisError, TargetError
from engine.models.images import load_image
from engine.models.loading import ClassifierModel, frozen, resolve_device, short_reason
from engine.models.preprocess import Geometry

from .binarize import binarize_scored
from .defense import ActivationFilter
from .explanation import GAMES, Explanation, FGVisConfig, Game, StepState, merge_rule
from .optimisation import Optimisation
from .reference import ReferenceCache

log = logging.getLogger(__name__)

Target = int | str | Sequence[int | str] | torch.Tensor | None


def explain(
    model: ClassifierModel | nn.Module,
    image,
    target: Target = None,
    *,
    game: Game = "preserve",
    defense: bool = True,
    config: FGVisConfig | None = None,
    on_step: Callable[[StepState], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    cache: ReferenceCache | None = None,
) -> Explanation:
    """Explain the model's decision for ``target`` on ``image`` with FGVis.

    Parameters
    ----------
    model
        A :class:`~engine.models.loading.ClassifierModel` (from :func:`~engine.models.loading.load_model`) or a bare
        ``nn.Module`` classifier returning logits ``(N, K)``.
    image
        A path, PIL image or array (or a list of them: a batch), or a tensor ``(N, C, H, W)`` / ``(C, H, W)``
        already in the model's input space (required for a bare module).
    target
        Class index, class name or ``"top1"``/``None`` (the model's top-1 per item); or one per batch
        item. Several targets for a single image explain each of them (a batch of ``len(target)``).
    game
        ``"preserve"`` or ``"delete"``.
    defense
        Filter gradients against adversarial evidence (the paper's method). ``False`` runs the identical
        loop without filtering, for comparison.
    config
        Optimisation settings; ``None`` = :class:`FGVisConfig` defaults.
    on_step
        Called after every step with a :class:`StepState` (including a small evidence preview).
    should_stop
        Polled before every step; returning ``True`` ends the run and returns the best mask so far,
        marked ``cancelled``.
    cache
        Keeps the reference forward pass (the defense's bounds and the logits on ``x``), the reference
        image ``r`` and its score between calls on the same image, model and device (the GUI's worker
        holds one).

    If CUDA runs out of memory, the batch is split in halves and run part by part (recursively), and the
    result says so in ``warnings``; a single image that does not fit raises :class:`DeviceError`.

    Returns
    -------
    Explanation
        Tensors on the CPU; see :class:`~engine.core.explanation.Explanation`.
    """
    config = config or FGVisConfig()
    if game not in GAMES:
        raise ConfigError(f"game must be one of {GAMES}, not {game!r}")
    target = _checked_target(target)
    classifier = _as_classifier(model, image)
    inputs, geometries, originals = _prepare_inputs(classifier, image)
    device = resolve_device(config.device, classifier)
    _check_inputs(classifier, inputs)
    run = _Run(classifier, game, defense, config, device, on_step, should_stop, cache)
    result = run.explain_splitting(inputs, geometries, originals, target)
    result.warnings.extend(_item_notes(result, classifier))
    return result


_TARGET_KINDS = 'a class index (an integer), a class name, "top1" or None'


def _checked_target(target: Target) -> Target:
    """``target`` with NumPy (and 0-d tensor) integers made ``int`` and arrays made lists; a bool, a float
    or any other kind of value is refused with a :class:`TargetError` (an integer tensor stays as it is)."""
    if isinstance(target, torch.Tensor):
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise TargetError(f"a tensor of targets must hold integer class indices, not {target.dtype} values")
        return target
    if isinstance(target, np.ndarray):
        if target.dtype == np.bool_ or not np.issubdtype(target.dtype, np.integer):
            raise TargetError(f"an array of targets must hold integer class indices, not {target.dtype} values")
        return int(target) if target.ndim == 0 else [int(value) for value in target.ravel()]
    if isinstance(target, Sequence | Iterator) and not isinstance(target, str | bytes):
        return [_checked_target_item(item) for item in target]
    return _checked_target_item(target)


def _checked_target_item(item):
    if item is None or isinstance(item, str):
        return item
    if isinstance(item, torch.Tensor | np.ndarray) and item.ndim == 0:
        item = item.item()
    if isinstance(item, numbers.Integral) and not isinstance(item, bool | np.bool_):
        return int(item)
    raise TargetError(f"a target must be {_TARGET_KINDS}, not {type(item).__name__} {item!r}")


def _expected_input(classifier: ClassifierModel, shape: tuple | None = None) -> str:
    """What the model takes, for messages about an input tensor; with its ``shape``, a hint where that
    looks channels-last."""
    height, width = classifier.input_size
    if classifier.pixel_input:
        expected = f"a float tensor (N, 3, H, W) in the model's input space, e.g. (1, 3, {height}, {width})"
    else:
        expected = "a float tensor (N, C, H, W) of the channels and size the model takes"
    if shape is not None and len(shape) == 4 and shape[-1] in (1, 3, 4) and shape[1] not in (1, 3, 4):
        expected += " (it looks channels-last: use tensor.permute(0, 3, 1, 2), or (2, 0, 1) for one image)"
    return expected


def _check_inputs(classifier: ClassifierModel, inputs: torch.Tensor) -> None:
    """Refuse inputs ``(N, C, H, W)`` the model cannot take, with the shape it expects, before the run: an
    empty batch or image, and channels other than 3 for a model fed from pixels. Whether the model runs on
    them and returns class scores is checked on the reference pass (:func:`_reference_pass`)."""
    shape = tuple(inputs.shape)
    if shape[0] == 0 or 0 in shape[2:]:
        expected = _expected_input(classifier)
        raise ConfigError(f"the input tensor of shape {shape} is empty: expected {expected} with N >= 1")
    if classifier.pixel_input and shape[1] != 3:
        raise ConfigError(
            f"the input tensor of shape {shape} has {shape[1]} channel{'s' if shape[1] != 1 else ''} but "
            f"{classifier.name} takes RGB: expected {_expected_input(classifier, shape)}"
        )


def _reference_pass(
    classifier: ClassifierModel, cache: ReferenceCache, image: tuple | None, x: torch.Tensor, activation_filter
) -> torch.Tensor:
    """The reference pass on ``x`` ``(N, C, H, W)`` (kept in ``cache``) -> logits ``(N, K)``. It is also the
    check that the model runs on the input and returns class scores: a model that fails on it or returns
    anything else is a :class:`ConfigError` naming the input it expects (one pass, not a separate trial).
    Running out of memory is not the input's fault: CUDA's error goes on to the batch split, the CPU's is
    a :class:`DeviceError`."""
    shape = tuple(x.shape)

    def check(logits) -> None:
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != shape[0]:
            returned = f"a tensor of shape {tuple(logits.shape)}" if isinstance(logits, torch.Tensor) else "no tensor"
            raise ConfigError(
                f"{classifier.name} is not a classifier: it returns {returned} for an input of shape {shape}; "
                f"expected ({shape[0]}, K) class scores"
            )

    try:
        return cache.record(classifier.module, image, x, activation_filter, check=check)
    except (torch.cuda.OutOfMemoryError, FGVisError):
        raise  # CUDA: the run splits the batch; the engine's own errors say what they are
    except Exception as exc:
        if _out_of_memory(exc):
            raise DeviceError(
                f"{x.device} ran out of memory on the reference pass of a batch of {shape[0]} at "
                f"{shape[2]}x{shape[3]}: explain fewer images at once or close other programs"
            ) from exc
        raise ConfigError(
            f"{classifier.name} fails on the input tensor of shape {shape}: {short_reason(exc)}; expected "
            f"{_expected_input(classifier, shape)}"
        ) from exc


def _out_of_memory(exc: BaseException) -> bool:
    """An allocation failure other than CUDA's own error type (the CPU allocator's, cuBLAS's...)."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate memory" in text


@dataclass
class _Run:
    """One :func:`explain` call: runs the batch and, if CUDA runs out of memory, halves it until the
    parts fit (each part is run in turn; the merged result carries a warning saying so)."""

    classifier: ClassifierModel
    game: Game
    defense: bool
    config: FGVisConfig
    device: torch.device
    on_step: Callable[[StepState], None] | None
    should_stop: Callable[[], bool] | None
    cache: ReferenceCache | None

    def explain_splitting(self, inputs, geometries, originals, target) -> Explanation:
        started = time.perf_counter()
        count = max(inputs.shape[0], _target_count(target))
        try:
            return self._explain_once(inputs, geometries, originals, target, started)
        except torch.cuda.OutOfMemoryError:
            if count < 2:
                raise DeviceError(
                    f"{self.device} ran out of memory explaining one image of {inputs.shape[2]}x{inputs.shape[3]} "
                    "even on its own: free GPU memory (close other programs) or use the CPU"
                ) from None
            # Leaving the except block drops the traceback and with it the failed attempt's tensors.
        torch.cuda.empty_cache()
        half = count // 2
        log.warning(
            "%s ran out of memory on a batch of %d: splitting it into %d + %d", self.device, count, half, count - half
        )
        parts = []
        for low, high in ((0, half), (half, count)):
            if inputs.shape[0] == count:
                part = (inputs[low:high], geometries[low:high], originals[low:high])
            else:  # one image, several targets
                part = (inputs, geometries, originals)
            parts.append(self.explain_splitting(*part, _slice_target(target, count, low, high)))
        merged = merge_explanations(parts)
        merged.wall_time_s = time.perf_counter() - started
        merged.warnings.insert(
            0,
            f"{self.device} ran out of memory on a batch of {count}: it was run as "
            f"{len(parts)} smaller batches ({half} + {count - half}), one after the other",
        )
        return merged

    def _explain_once(self, inputs, geometries, originals, target, started) -> Explanation:
        device = self.device
        try:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(self.config.seed)
                return self._optimise(inputs, geometries, originals, target, started)
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()

    def _optimise(self, inputs, geometries, originals, target, started: float) -> Explanation:
        """One batch, start to end: the reference pass, the optimisation loop, binarisation and the final
        scoring of ``e``. ``inputs`` ``(N, C, H, W)`` in the model's input space (CPU)."""
        classifier, game, defense, config, device = self.classifier, self.game, self.defense, self.config, self.device
        on_step, should_stop, cache = self.on_step, self.should_stop, self.cache
        module = classifier.module
        activation_filter = ActivationFilter(rtol=config.defense_rtol, atol=config.defense_atol, enabled=defense)
        cache = cache if cache is not None else ReferenceCache(size=0)
        with frozen(module):
            x = inputs.to(device=device, dtype=torch.float32)
            image = cache.image_key(inputs)
            logits_x = _reference_pass(classifier, cache, image, x, activation_filter)
            if not classifier.labels:
                classifier.labels = [f"class {i}" for i in range(logits_x.shape[1])]
            targets = _resolve_targets(classifier, target, logits_x)
            if targets.shape[0] != x.shape[0]:
                # One image, several targets: explain each target on its own copy of the image.
                x = x.expand(targets.shape[0], -1, -1, -1).contiguous()
                geometries, originals = geometries * targets.shape[0], originals * targets.shape[0]
                image = None if image is None else (image, targets.shape[0])
                logits_x = cache.record(module, image, x, activation_filter)
            if defense and activation_filter.num_activations == 0:
                raise DefenseError(
                    f"{classifier.name}: no activation function could be intercepted (TorchScript models run "
                    "their operations outside Python), so the defense cannot be applied; use defense=False"
                )
            targets = targets.to(device)
            probs_x = torch.softmax(logits_x.float(), dim=1)
            prob_original = probs_x.gather(1, targets[:, None])[:, 0]
            top1_original = probs_x.argmax(1)
            reference = cache.reference(classifier, image, x, config)
            quantize = classifier.preprocessing.quantize if classifier.pixel_input else _unchanged
            score_8bit = config.quantize and classifier.pixel_input
            if config.reference == "blur":
                # On 8-bit values, so that a 0/1 mask's explanation is exactly the picture the app saves
                # (EfficientNet-Lite0 scored binarised blur explanations 0.23 in float and 0.40 as PNG).
                reference = quantize(reference)
            loop = Optimisation(
                game,
                config,
                x,
                reference,
                targets,
                prob_original,
                top1_original,
                quantize=classifier.preprocessing.quantizer(x) if score_8bit else None,
            )
            history: list[StepState] = []
            cancelled = False
            next_preview = 0.0
            for step in range(1, config.steps + 1):
                if should_stop is not None and should_stop():
                    cancelled = True
                    break
                state = loop.step(module, activation_filter, step)
                history.append(state)
                if on_step is not None:
                    now = time.perf_counter()
                    if now >= next_preview:
                        next_preview = now + 1.0 / config.preview_rate_hz
                        state = _with_preview(state, loop.mask, game, config.preview_size)
                    on_step(state)
                if loop.converged(step):
                    log.debug("converged after %d steps", step)
                    break
            mask = loop.result_mask()
            scored = None
            if config.binarize and not cancelled:
                scored = binarize_scored(
                    module, x, reference, mask, game, targets, loop.goal, quantize if score_8bit else None
                )
                mask = scored.mask
            with torch.no_grad():
                explanation = mask * x + (1 - mask) * reference
                if score_8bit:
                    explanation = quantize(explanation)
                if scored is not None and bool(scored.scored.all()):
                    # Every mask is a 0/1 mask binarisation scored on exactly this explanation.
                    logits_e = scored.logits
                else:
                    logits_e = module(explanation).float()
                probs_e = torch.softmax(logits_e, dim=1)
                # The reference alone (every pixel removed), scored the same way: what it keeps by itself.
                # A pass of its own (one of 2N items could need more memory than the optimisation did),
                # kept with the reference for re-runs on the same image.
                removed = quantize(reference) if score_8bit else reference
                probs_r = torch.softmax(cache.reference_logits(classifier, image, x, config, removed), dim=1)
            prob_explanation = probs_e.gather(1, targets[:, None])[:, 0]
            prob_reference = probs_r.gather(1, targets[:, None])[:, 0]
            top1_explanation = probs_e.argmax(1)
            top1_reference = probs_r.argmax(1)
            goal_met = loop.goal(prob_explanation, top1_explanation)
        result = Explanation(
            mask=mask.detach().cpu(),
            explanation=explanation.cpu(),
            input=x.cpu(),
            reference=reference.cpu(),
            target=targets.cpu(),
            target_labels=[classifier.label(int(t)) for t in targets],
            prob_original=prob_original.cpu(),
            prob_explanation=prob_explanation.cpu(),
            prob_reference=prob_reference.cpu(),
            top1_original=top1_original.cpu(),
            top1_explanation=top1_explanation.cpu(),
            top1_reference=top1_reference.cpu(),
            lambda_=loop.result_lambda().cpu(),
            goal_met=goal_met.cpu(),
            game=game,
            defense=defense,
            config=config,
            steps=len(history),
            cancelled=cancelled,
            history=history,
            wall_time_s=time.perf_counter() - started,
            device=str(device),
            model_name=classifier.name,
            defended_activations=activation_filter.num_activations,
            preprocessing=classifier.preprocessing,
            geometries=list(geometries),
            originals=list(originals),
            warnings=loop.notes,
        )
        log.info(
            "%s (%s, defense %s): %d steps in %.1f s, p %s -> %s, mask mean %s",
            game,
            classifier.name,
            "on" if defense else "off",
            result.steps,
            result.wall_time_s,
            _fmt(result.prob_original),
            _fmt(result.prob_explanation),
            _fmt(result.mask.flatten(1).mean(1)),
        )
        return result


def _target_count(target: Target) -> int:
    """How many targets a per-item target list names (1 for a single target or ``None``)."""
    if isinstance(target, torch.Tensor):
        return target.numel()
    if target is None or isinstance(target, int | str):
        return 1
    return len(list(target))


def _slice_target(target: Target, count: int, low: int, high: int) -> Target:
    """The targets of items ``low:high`` of a batch of ``count``."""
    if target is None or isinstance(target, int | str):
        return target
    items = target.flatten().tolist() if isinstance(target, torch.Tensor) else list(target)
    return items[low:high] if len(items) == count else target


def merge_explanations(parts: Sequence[Explanation]) -> Explanation:
    """Join explanations of consecutive parts of one batch (same game, model and settings), field by field
    as each field's merge rule says (:mod:`engine.core.explanation`).

    Parts that stopped earlier than the longest repeat their last :class:`StepState` in the merged
    history, so every step has a value for every item."""
    if len(parts) == 1:
        return parts[0]
    values: dict[str, Any] = {}
    for spec in fields(Explanation):
        rule, each = merge_rule(spec), [getattr(part, spec.name) for part in parts]
        if rule == "history":
            values[spec.name] = _merge_histories(each, max(part.steps for part in parts))
        else:
            values[spec.name] = _merge(rule, each)
    return Explanation(**values)


def _merge(rule: str, values: list):
    if rule == "item":
        return torch.cat(values) if isinstance(values[0], torch.Tensor) else [v for part in values for v in part]
    if rule == "join":
        return [v for part in values for v in part]
    combiners: dict[str, Callable[[list], Any]] = {"same": lambda v: v[0], "max": max, "any": any, "sum": sum}
    return combiners[rule](values)


def _merge_histories(histories: list[list[StepState]], steps: int) -> list[StepState]:
    merged = []
    for index in range(steps):
        states = [history[min(index, len(history) - 1)] for history in histories if history]
        values: dict[str, Any] = {}
        for spec in fields(StepState):
            rule, each = merge_rule(spec), [getattr(state, spec.name) for state in states]
            values[spec.name] = np.concatenate(each) if rule == "item" else each[0]
        merged.append(StepState(**{**values, "step": index + 1}))
    return merged


def _unchanged(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


#: A preserved explanation whose target probability is at least this many times the photo's, and
#: :data:`INFLATION_RISE` higher, gets a note: the mask amplified the class instead of keeping it.
INFLATION_RATIO = 2.0
INFLATION_RISE = 0.2
#: A preservation whose reference alone keeps at least this share of the image's target probability
#: gets a note: the evidence shown is what lifts the reference back to the goal, not all the model uses
#: (the sigma-5 blur of chelsea.jpg keeps 0.74 of it; docs/DEFAULTS.md, "More levers tried").
REFERENCE_KEEPS = 0.5


def _item_notes(result: Explanation, classifier: ClassifierModel) -> list[str]:
    """What a reviewer must know about single items of a finished run: a target that is not the model's
    top-1 on the image, a preserved explanation that inflates the score, a reference that keeps much of the
    score by itself (preservation of the top-1 class), a soft mask where sharpening was asked for but no
    0/1 mask meets the goal, and a goal that was not met (items numbered from 1 in the whole batch)."""
    notes = []
    count = len(result)
    for index in range(count):
        item = f"item {index + 1}: " if count > 1 else ""
        p_x, p_e = float(result.prob_original[index]), float(result.prob_explanation[index])
        top1, target = int(result.top1_original[index]), int(result.target[index])
        if top1 != target:
            notes.append(
                f"{item}'{result.target_labels[index]}' is not the model's top-1 on this image (p = {p_x:.3g}; "
                f"top-1 '{classifier.label(top1)}'): the explanation shows what evidence there is for it, which "
                "may be little"
            )
        if result.game == "preserve" and p_e >= INFLATION_RATIO * p_x and p_e - p_x >= INFLATION_RISE:
            notes.append(
                f"{item}the explanation raises p('{result.target_labels[index]}') from {p_x:.3g} to {p_e:.3g} "
                f"({p_e / max(p_x, 1e-12):.3g}x): the model finds more for this class in e than in the photo, so e "
                "shows evidence the mask made stronger, not only evidence the photo holds"
            )
        config = result.config
        p_r = float(result.prob_reference[index])
        if result.game == "preserve" and top1 == target:
            stronger = "a larger blur sigma" if config.reference == "blur" else "another reference"
            if p_r >= config.preserve_ratio * p_x and int(result.top1_reference[index]) == target:
                notes.append(
                    f"{item}the reference alone (every pixel removed) already meets the preservation goal: p = "
                    f"{p_r:.3g} against {p_x:.3g} on the image, still top-1. An empty mask plays the game, so "
                    f"what is shown is not evidence the model needs; a stronger reference ({stronger}) makes the "
                    "game meaningful"
                )
            elif p_r >= REFERENCE_KEEPS * p_x:
                notes.append(
                    f"{item}the reference alone (every pixel removed) keeps {p_r / max(p_x, 1e-12):.0%} of the "
                    f"score (p = {p_r:.3g}): the evidence shown is what lifts it back to the goal, not all the "
                    f"evidence the model uses; {stronger} may remove more"
                )
        if (
            config.binarize
            and bool(result.goal_met[index])
            and not result.cancelled
            and not _is_binary(result.mask[index])
        ):
            kept = "kept" if result.game == "preserve" else "removed"
            notes.append(
                f"{item}no 0/1 mask of the values with evidence meets the {result.game} goal, so the soft mask "
                f"is shown: its evidence is values partly {kept}, not a cut-out"
            )
        if not bool(result.goal_met[index]) and not result.cancelled:
            if result.game == "preserve":
                goal = f"p(e) >= {config.preserve_ratio:g} x {p_x:.3g}, target kept top-1"
            else:
                goal = f"p(e) <= {config.delete_ratio:g} x {p_x:.3g}"
            unreachable = ""
            if result.game == "delete" and p_r > config.delete_ratio * p_x:
                unreachable = f" (even the reference alone, every pixel removed, scores p = {p_r:.3g})"
            notes.append(
                f"{item}the {result.game} goal ({goal}) was not met within {config.steps} steps: p(e) = {p_e:.3g}"
                f"{unreachable}; the mask shown is the one that came closest"
            )
    return notes


def _is_binary(mask: torch.Tensor) -> bool:
    """Whether every value of ``mask`` is 0 or 1."""
    return bool(((mask == 0) | (mask == 1)).all())


def _with_preview(state: StepState, mask: torch.Tensor, game: Game, size: int) -> StepState:
    with torch.no_grad():
        evidence = mask.detach().mean(1, keepdim=True)
        if game == "delete":
            evidence = 1 - evidence
        height, width = evidence.shape[2:]
        scale = size / max(height, width)
        if scale < 1:
            target = (max(1, round(height * scale)), max(1, round(width * scale)))
            evidence = F.adaptive_avg_pool2d(evidence, target)
        preview = evidence[:, 0].float().cpu().numpy()
    return StepState(**{**state.__dict__, "preview": preview})


def _as_classifier(model, image) -> ClassifierModel:
    if isinstance(model, ClassifierModel):
        return model
    if isinstance(model, nn.Module):
        if not isinstance(image, torch.Tensor):
            raise ConfigError(
                "a bare nn.Module needs an already preprocessed tensor (N, C, H, W); to explain a photo, "
                "use load_model(...) or ClassifierModel.from_module(module, preprocessing=...)"
            )
        return ClassifierModel.from_module(model)
    raise ConfigError(f"model must be a ClassifierModel or torch.nn.Module, not {type(model).__name__}")


def _prepare_inputs(classifier: ClassifierModel, image):
    """-> inputs ``(N, C, H, W)`` float32 on CPU, geometries and original photos (``None`` for tensors)."""
    if isinstance(image, torch.Tensor):
        tensor = image.detach()
        if tensor.dim() == 3:
            tensor = tensor.unsqueeze(0)
        if tensor.dim() != 4 or not tensor.is_floating_point():
            raise ConfigError(f"an input tensor must be float (N, C, H, W), not {tuple(tensor.shape)} {tensor.dtype}")
        if not torch.isfinite(tensor).all():
            raise ConfigError("the input tensor contains NaN or infinite values")
        return tensor, [None] * tensor.shape[0], [None] * tensor.shape[0]
    sources = list(image) if isinstance(image, list | tuple) else [image]
    if not sources:
        raise ConfigError("no image given")
    tensors: list[torch.Tensor] = []
    geometries: list[Geometry | None] = []
    originals: list[np.ndarray | None] = []
    for source in sources:
        if not isinstance(source, str | Path | Image.Image | np.ndarray):
            raise ConfigError(f"cannot read an image from a {type(source).__name__}")
        photo = load_image(source)
        tensor, geometry = classifier.preprocessing(photo)
        tensors.append(tensor)
        geometries.append(geometry)
        originals.append(np.asarray(photo))
    return torch.cat(tensors), geometries, originals


def _resolve_targets(classifier: ClassifierModel, target: Target, logits: torch.Tensor) -> torch.Tensor:
    """-> ``(M,)`` int64 class indices on the CPU; ``M`` is the batch size or, for one image with several
    targets, the number of targets."""
    count = logits.shape[0]
    top1 = logits.argmax(1).cpu()
    if target is None or (isinstance(target, str) and target.strip().lower() == "top1"):
        return top1
    if isinstance(target, torch.Tensor):
        target = target.flatten().tolist()
    if isinstance(target, int | str):
        return torch.full((count,), classifier.resolve_target(target), dtype=torch.long)
    items = list(target)
    if not items:
        raise TargetError("an empty list of targets was given")
    if len(items) != count and count != 1:
        raise TargetError(f"{len(items)} targets were given for {count} images")
    resolved = []
    for position, item in enumerate(items):
        is_top1 = item is None or (isinstance(item, str) and item.strip().lower() == "top1")
        resolved.append(int(top1[0 if count == 1 else position]) if is_top1 else classifier.resolve_target(item))
    return torch.tensor(resolved, dtype=torch.long)


def _fmt(values: torch.Tensor) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values.tolist()) + "]"
