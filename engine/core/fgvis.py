"""The FGVis optimisation: preservation and deletion games (docs/METHOD.md §1-2).

``e = m*x + (1-m)*r`` with a full-resolution, per-channel mask ``m`` initialised to ones and clipped to
[0, 1] after every step.

* preserve: minimise ``-s(e) + lambda*mean(m)`` -- the smallest evidence that keeps the decision;
* delete:   minimise ``s(e) - lambda*mean(m)`` -- the smallest change that destroys it.

``s`` is the target's softmax probability (or its log, ``loss="ce"``). Gradients of ``s`` through the
network pass the defense's gradient filter (:mod:`engine.core.defense`); the sparsity term's gradient does
not. With automatic lambda each item gets its own lambda, raised after a step that met the game's goal
and lowered after one that did not, and the sparsest (preserve) or least-changed (delete) mask that met
the goal is returned. All items of a batch are optimised together in one batched loop.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import math
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

from engine.errors import ConfigError, DefenseError, DeviceError, TargetError
from engine.models.images import load_image
from engine.models.loading import ClassifierModel, frozen, resolve_device, short_reason
from engine.models.preprocess import Geometry

from .defense import ActivationFilter
from .explanation import GAMES, Explanation, FGVisConfig, Game, StepState, merge_rule
from .model_pass import TRIAL_ROUNDS, ModelPass, record_cuda_graph

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
        Keeps the reference forward pass (the defense's bounds and the logits on ``x``) and the reference
        image ``r`` between calls on the same image, model and device (the GUI's worker holds one).

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
    _check_inputs(classifier, inputs, device)
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


def _check_inputs(classifier: ClassifierModel, inputs: torch.Tensor, device: torch.device) -> None:
    """Refuse inputs ``(N, C, H, W)`` the model cannot take, with the shape it expects, before the run:
    an empty batch or image, channels other than 3 for a model fed from pixels, and any shape on which one
    forward pass of the model fails or does not return ``(1, K)`` class scores."""
    shape = tuple(inputs.shape)
    height, width = classifier.input_size
    if classifier.pixel_input:
        expected = f"a float tensor (N, 3, H, W) in the model's input space, e.g. (1, 3, {height}, {width})"
    else:
        expected = "a float tensor (N, C, H, W) of the channels and size the model takes"
    if shape[0] == 0 or 0 in shape[2:]:
        raise ConfigError(f"the input tensor of shape {shape} is empty: expected {expected} with N >= 1")
    hint = ""
    if shape[-1] in (1, 3, 4) and shape[1] not in (1, 3, 4):
        hint = " (it looks channels-last: use tensor.permute(0, 3, 1, 2), or (2, 0, 1) for one image)"
    if classifier.pixel_input and shape[1] != 3:
        raise ConfigError(
            f"the input tensor of shape {shape} has {shape[1]} channel{'s' if shape[1] != 1 else ''} but "
            f"{classifier.name} takes RGB: expected {expected}{hint}"
        )
    try:
        with torch.no_grad(), frozen(classifier.module):
            output = classifier.module(inputs[:1].to(device=device, dtype=torch.float32))
    except torch.cuda.OutOfMemoryError:
        return  # not a problem of the input: the run splits the batch, or says that one image does not fit
    except Exception as exc:
        raise ConfigError(
            f"{classifier.name} fails on the input tensor of shape {shape}: {short_reason(exc)}; expected "
            f"{expected}{hint}"
        ) from exc
    if not isinstance(output, torch.Tensor) or output.dim() != 2 or output.shape[0] != 1:
        returned = f"a tensor of shape {tuple(output.shape)}" if isinstance(output, torch.Tensor) else "no tensor"
        raise ConfigError(
            f"{classifier.name} is not a classifier: it returns {returned} for one input; expected (1, K) class scores"
        )


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
            logits_x = cache.record(module, image, x, activation_filter)
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
            if config.binarize and not cancelled:
                mask = binarize(module, x, reference, mask, game, targets, loop.goal, quantize if score_8bit else None)
            with torch.no_grad():
                explanation = mask * x + (1 - mask) * reference
                if score_8bit:
                    explanation = quantize(explanation)
                probs_e = torch.softmax(module(explanation).float(), dim=1)
            prob_explanation = probs_e.gather(1, targets[:, None])[:, 0]
            top1_explanation = probs_e.argmax(1)
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
            top1_original=top1_original.cpu(),
            top1_explanation=top1_explanation.cpu(),
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


class _MaskOptimizer:
    """Adam (default), RMS-normalised gradient descent or plain SGD on the mask, with per-item state so
    that one item can be rolled back without disturbing the others.

    Shapes: mask and moments ``(N, C, H, W)``, step counts ``(N,)``."""

    def __init__(self, mask: torch.Tensor, kind: str, lr: float, betas=(0.9, 0.999), eps: float = 1e-8) -> None:
        self.kind = kind
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps
        # Only Adam has per-item state to roll back.
        if kind == "adam":
            self.exp_avg = torch.zeros_like(mask)
            self.exp_avg_sq = torch.zeros_like(mask)
            self.count = torch.zeros(mask.shape[0], device=mask.device)

    def step(self, mask: torch.Tensor, grad: torch.Tensor) -> None:
        """Update ``mask`` in place to decrease the loss whose gradient is ``grad``."""
        lr = self.lr
        if self.kind == "sgd":
            mask.sub_(grad, alpha=lr)
            return
        if self.kind == "normalized":
            # Gradient descent with the gradient scaled per item to unit RMS: keeps how strongly each
            # pixel matters relative to the others (Adam's per-pixel normalisation erases exactly
            # that), while the learning rate stays meaningful in mask units.
            dims = tuple(range(1, grad.dim()))
            rms = grad.square().mean(dims, keepdim=True).sqrt_().add_(1e-12)
            mask.sub_(lr * grad / rms)
            return
        shape = (-1,) + (1,) * (mask.dim() - 1)
        self.count += 1
        self.exp_avg.mul_(self.beta1).add_(grad, alpha=1 - self.beta1)
        self.exp_avg_sq.mul_(self.beta2).addcmul_(grad, grad, value=1 - self.beta2)
        correction1 = (1 - self.beta1**self.count).view(shape)
        correction2 = (1 - self.beta2**self.count).view(shape)
        denominator = (self.exp_avg_sq / correction2).sqrt_().add_(self.eps)
        mask.sub_(lr * (self.exp_avg / correction1) / denominator)

    def state(self) -> tuple[torch.Tensor, ...]:
        """The tensors a rollback must restore (empty for the stateless optimisers)."""
        return (self.exp_avg, self.exp_avg_sq, self.count) if self.kind == "adam" else ()


@dataclass
class BestSoFar:
    """Per item of a batch of ``N``: the best mask that met the game's goal so far -- the smallest
    preservation or the fullest deletion -- or, while none has, the one that came closest, with what a
    rollback to it needs (:class:`Optimisation`, docs/METHOD.md §2).

    Attributes
    ----------
    mask
        ``(N, C, H, W)`` in [0, 1].
    optimizer_state
        The mask optimiser's per-item state at that mask (Adam's moments and step count).
    value
        ``(N,)`` ``sense * mean(mask)`` of the best mask that met the goal (lower is better; inf: none yet).
    lambda_
        ``(N,)`` the sparsity weight in force at that mask.
    loss
        ``(N,)`` manual lambda only: the lowest loss so far (convergence is judged on it).
    found
        ``(N,)`` bool: a mask met the goal.
    closest
        ``(N,)`` until one does: how far the closest mask's probability was from the goal.
    last_improved
        ``(N,)`` int64: the step of the last significant improvement (early stopping).
    """

    mask: torch.Tensor
    optimizer_state: tuple[torch.Tensor, ...]
    value: torch.Tensor
    lambda_: torch.Tensor
    loss: torch.Tensor
    found: torch.Tensor
    closest: torch.Tensor
    last_improved: torch.Tensor

    @classmethod
    def start(cls, mask: torch.Tensor, optimizer_state: tuple[torch.Tensor, ...], lambda_: torch.Tensor) -> BestSoFar:
        """Before the first step: the starting mask, nothing found."""
        count, device = mask.shape[0], mask.device
        inf = torch.full((count,), math.inf, device=device)
        return cls(
            mask=mask.detach().clone(),
            optimizer_state=tuple(t.clone() for t in optimizer_state),
            value=inf.clone(),
            lambda_=lambda_.clone(),
            loss=inf.clone(),
            found=torch.zeros(count, dtype=torch.bool, device=device),
            closest=inf.clone(),
            last_improved=torch.zeros(count, dtype=torch.long, device=device),
        )


class Optimisation:
    """The mask optimisation of one batch: mask, optimiser, lambda control and the best masks so far.

    Automatic lambda (docs/METHOD.md §2, "lambda chosen per image"): while a step meets
    the game's goal, lambda grows by ``exp(lambda_rate)`` (more sparsity pressure). When a step misses
    it, the item is rolled back to its best mask so far (mask and optimiser state) and continues with
    half the lambda -- an online bisection that never wanders off the feasible set. Before any step
    met the goal (deletion at the start), lambda shrinks by ``exp(-lambda_rate)`` instead. Measured
    reason: with the defense on, the filtered gradient does not lead back once an explanation has lost
    the target (see docs/DEFAULTS.md).
    """

    def __init__(
        self,
        game,
        config: FGVisConfig,
        x,
        reference,
        targets,
        prob_original,
        top1_original,
        *,
        graph_trial_rounds: int = TRIAL_ROUNDS,
        quantize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.game = game
        self.quantize = quantize
        self.config = config
        self.x = x
        self.reference = reference
        self.targets = targets
        self.prob_original = prob_original
        self.top1_original = top1_original
        self.mask = torch.ones_like(x, requires_grad=True)
        self.lr = config.learning_rate(game)
        self.optimizer = _MaskOptimizer(self.mask, config.optimizer, self.lr)
        count = x.shape[0]
        self.auto_lambda = config.lambda_ is None
        start = config.lambda_ if config.lambda_ is not None else config.lambda_init
        self.lambda_ = torch.full((count,), float(start), device=x.device)
        # Preserve looks for the smallest mask mean that meets the goal, delete for the largest.
        self.sense = 1.0 if game == "preserve" else -1.0
        self.best = BestSoFar.start(self.mask, self.optimizer.state(), self.lambda_)
        self.all_goal_met = False
        self.use_graph = config.cuda_graph and x.device.type == "cuda"
        self.graph_trial_rounds = graph_trial_rounds
        self.model_pass: ModelPass | None = None  # created with the first step

    @property
    def notes(self) -> list[str]:
        """For the user (``Explanation.warnings``)."""
        return list(self.model_pass.notes) if self.model_pass is not None else []

    def goal(self, prob: torch.Tensor, top1: torch.Tensor) -> torch.Tensor:
        """``(N,)`` bool: the game's goal (see :func:`goal_met`) is met."""
        return goal_met(self.game, self.config, prob, top1, self.targets, self.prob_original, self.top1_original)

    def _forward_backward(self, module: nn.Module, activation_filter: ActivationFilter, count: bool = True):
        """The model's part of a step: -> logits ``(N, K)``, log p(target) ``(N,)`` and the gradient of the
        score term w.r.t. the mask ``(N, C, H, W)``. Only the score is back-propagated (and filtered); the
        sparsity term is applied as a separate proximal step. ``count``: let the defense count blocked
        units (its monitor)."""
        explanation = self.mask * self.x + (1 - self.mask) * self.reference
        if self.quantize is not None:  # scored as 8-bit pixels; the rounding is straight-through
            with torch.no_grad():
                rounding = self.quantize(explanation) - explanation
            explanation = explanation + rounding
        with activation_filter.filtering(module, count=count):
            logits = module(explanation)
        log_probs = torch.log_softmax(logits.float(), dim=1).gather(1, self.targets[:, None])[:, 0]
        score = log_probs.exp() if self.config.loss == "prob" else log_probs
        (grad,) = torch.autograd.grad((-self.sense * score).sum(), self.mask)
        return logits.detach(), log_probs.detach(), grad

    def _model_pass(self, module: nn.Module, activation_filter: ActivationFilter) -> ModelPass:
        """The model's part of each step: eager, or on CUDA a replayed graph where that is faster
        (:mod:`engine.core.model_pass`)."""
        if self.model_pass is None:
            device = self.x.device

            def run(count: bool):
                return self._forward_backward(module, activation_filter, count)

            def record():
                # Recorded counting: on a GPU the count costs next to nothing inside the graph.
                replay, outputs = record_cuda_graph(lambda: run(True), device)
                recorded = activation_filter.last_pass()

                def replay_pass() -> None:
                    replay()
                    activation_filter.replayed(recorded)

                return replay_pass, outputs

            self.model_pass = ModelPass(
                run,
                record if self.use_graph else None,
                rounds=self.graph_trial_rounds,
                synchronize=lambda: torch.cuda.synchronize(device) if device.type == "cuda" else None,
            )
        return self.model_pass

    def step(self, module: nn.Module, activation_filter: ActivationFilter, step: int) -> StepState:
        mask = self.mask
        counted = step == 1 or step % self.config.monitor_every == 0
        logits, log_probs, grad = self._model_pass(module, activation_filter)(counted)
        probs = log_probs.exp()
        score = probs if self.config.loss == "prob" else log_probs
        size = mask.detach().flatten(1).mean(1)
        # preserve: -s + lambda*|m| ; delete: s - lambda*|m|.
        loss = self.sense * (self.lambda_ * size - score)
        with torch.no_grad():
            met = self.goal(probs, logits.argmax(1))
            lambda_used = self.lambda_.clone()
            self._remember(met, size, loss, probs.detach(), step)
            if self.config.sparsity == "coupled":
                # The paper's objective as one gradient: d(lambda*mean(m))/dm = lambda / (C*H*W) joins
                # the score's gradient before Adam normalises each value's step. A value whose score
                # gradient is weaker than that falls to the reference at the full rate ``lr``, one whose
                # gradient is stronger stays: masks become cut-outs, not fades (docs/DEFAULTS.md).
                per_value = (self.sense / mask[0].numel()) * self.lambda_
                self.optimizer.step(mask, grad + per_value.view(-1, 1, 1, 1))
            else:
                self.optimizer.step(mask, grad)
                # Proximal step of lambda*mean(m) on [0, 1]: shrink (preserve) or grow (delete) every mask
                # value by lr*lambda, then clip (like AdamW's decoupled weight decay).
                mask.sub_((self.sense * self.lr) * self.lambda_.view(-1, 1, 1, 1))
            if self.auto_lambda:
                self._control_lambda(met)
            mask.clamp_(0.0, 1.0)
            self.all_goal_met = bool(met.all())
            blocked = activation_filter.blocked_fraction()
        return StepState(
            step=step,
            total=self.config.steps,
            loss=loss.detach().cpu().numpy(),
            target_prob=probs.detach().cpu().numpy(),
            mask_mean=size.detach().cpu().numpy(),
            lambda_=lambda_used.cpu().numpy(),
            blocked_fraction=blocked.cpu().numpy() if blocked.numel() else np.zeros(len(probs), np.float32),
            goal_met=met.cpu().numpy(),
        )

    def _remember(self, met: torch.Tensor, size: torch.Tensor, loss: torch.Tensor, probs: torch.Tensor, step: int):
        """Keep, per item, the state of the best mask that met the goal (before this step's update), or,
        while none has, the mask whose probability came closest to it."""
        if not self.auto_lambda:
            # Manual lambda: convergence is judged on the loss itself.
            significant = loss < self.best.loss - self.config.tolerance
            self.best.loss = torch.minimum(self.best.loss, loss)
            self.best.last_improved[significant] = step
            return
        distance = -self.sense * probs  # preserve: higher p is closer to the goal; delete: lower p
        closer = ~self.best.found & ~met & (distance < self.best.closest)
        if closer.any():
            self.best.closest = torch.where(closer, distance, self.best.closest)
            self.best.mask[closer] = self.mask.detach()[closer]
        value = self.sense * size
        better = met & (value < self.best.value)
        self.best.last_improved[better & (value < self.best.value - self.config.tolerance)] = step
        if better.any():
            self.best.value = torch.where(better, value, self.best.value)
            self.best.mask[better] = self.mask.detach()[better]
            for saved, current in zip(self.best.optimizer_state, self.optimizer.state(), strict=True):
                saved[better] = current[better]
            self.best.lambda_ = torch.where(better, self.lambda_, self.best.lambda_)
            self.best.found |= better

    def _control_lambda(self, met: torch.Tensor) -> None:
        rate = self.config.lambda_rate
        self.lambda_ = torch.where(met, self.lambda_ * math.exp(rate), self.lambda_ * math.exp(-rate))
        rollback = ~met & self.best.found
        if rollback.any():
            self.mask.detach()[rollback] = self.best.mask[rollback]
            for saved, current in zip(self.best.optimizer_state, self.optimizer.state(), strict=True):
                current[rollback] = saved[rollback]
            halved = torch.minimum(self.lambda_ * math.exp(rate), self.best.lambda_) * 0.5
            self.lambda_ = torch.where(rollback, halved, self.lambda_)

    def converged(self, step: int) -> bool:
        if self.game == "delete" and self.config.stop_when_deleted and self.all_goal_met:
            return True
        patience = self.config.patience
        if not patience or step < patience:
            return False
        if self.auto_lambda and not bool(self.best.found.all()):
            return False
        return bool((step - self.best.last_improved >= patience).all())

    def result_mask(self) -> torch.Tensor:
        """Automatic lambda: the best mask that met the goal (where none did, the one that came
        closest); manual lambda: the current mask."""
        if not self.auto_lambda:
            return self.mask.detach().clone()
        return self.best.mask.clone()

    def result_lambda(self) -> torch.Tensor:
        if not self.auto_lambda:
            return self.lambda_.clone()
        return torch.where(self.best.found, self.best.lambda_, self.lambda_)


#: Shares of a mask's values that :func:`binarize` tries, smallest first: 0.5 % to 48 %, each 1.2x the last.
BINARY_SHARES = tuple(round(0.005 * 1.2**k, 4) for k in range(26))
#: Rounds of bisection after the :data:`BINARY_SHARES` sweep (each one forward pass of the batch): the
#: share kept ends within 1.2 ** (1 / 2 ** rounds) of the smallest that meets the goal on the path.
BISECT_ROUNDS = 4


def goal_met(
    game: Game,
    config: FGVisConfig,
    prob: torch.Tensor,
    top1: torch.Tensor,
    targets: torch.Tensor,
    prob_original: torch.Tensor,
    top1_original: torch.Tensor,
) -> torch.Tensor:
    """``(N,)`` bool: the game's goal holds for an explanation scoring ``prob`` (0..1) with top-1 class
    ``top1`` (all ``(N,)``, on one device). Preservation keeps ``p >= preserve_ratio * p(x)`` and the
    target top-1 where it was top-1 on the image; deletion reaches ``p <= delete_ratio * p(x)``."""
    if game == "preserve":
        kept_top1 = (top1 == targets) | (top1_original != targets)
        return (prob >= config.preserve_ratio * prob_original) & kept_top1
    return prob <= config.delete_ratio * prob_original


@torch.no_grad()
def binarize(
    module: nn.Module,
    x: torch.Tensor,
    reference: torch.Tensor,
    mask: torch.Tensor,
    game: Game,
    targets: torch.Tensor,
    goal: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    quantize: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Sharpen an optimised mask into a 0/1 mask where one plays the game (docs/METHOD.md §2; measured in
    docs/DEFAULTS.md).

    A candidate keeps the strongest share ``f`` of the evidence values (``m`` to preserve, ``1 - m`` to
    delete; per pixel *and* channel, so the mask stays full-resolution and per-channel) whole (preserve:
    ``m = 1`` there, 0 elsewhere) or removes them whole (delete: ``m = 0`` there, 1 elsewhere), and is
    scored as its explanation passed through ``quantize``. A binary search over the shares of
    :data:`BINARY_SHARES` (the goal is taken to hold from some share on: more evidence kept, or more
    removed, helps the game) finds the smallest share that meets ``goal`` in 5 forward passes instead of
    up to 26; :data:`BISECT_ROUNDS` rounds of bisection between it and the share below then look for a
    smaller count of values that still meets it. Where the search finds no share and the soft mask misses
    the goal as well, the grid is swept from the smallest share (a 0/1 mask may still meet it: the goal
    need not hold from one share on). Every mask returned was checked; items where no share meets the
    goal keep their soft mask.

    Parameters
    ----------
    module
        The classifier (eval mode): ``(N, C, H, W)`` -> logits ``(N, K)``.
    x, reference
        ``(N, C, H, W)``: the image and the reference ``r`` in model-input space.
    mask
        ``(N, C, H, W)`` in [0, 1]: the optimised mask.
    game
        ``"preserve"`` or ``"delete"``.
    targets
        ``(N,)`` int64 target classes.
    goal
        ``(p(target) (N,), top-1 (N,)) -> (N,) bool``: the game's goal (:func:`goal_met`).
    quantize
        Applied to each candidate explanation before it is scored: the 8-bit picture the app saves,
        read back (:meth:`~engine.models.preprocess.Preprocessing.quantize`), so a chosen mask survives export.

    Returns
    -------
    torch.Tensor
        ``(N, C, H, W)`` in [0, 1]: 0/1 where a share met the goal, else ``mask`` unchanged.
    """
    quantize = quantize or _unchanged
    evidence = (mask if game == "preserve" else 1 - mask).flatten(1)
    values = evidence.shape[1]
    # rank[i, j]: the place of value j in item i's evidence, strongest first (0).
    order = evidence.argsort(1, descending=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(values, device=mask.device).expand_as(order))

    def meets_goal(candidate: torch.Tensor) -> torch.Tensor:
        """``(N,)`` bool: the explanations of the masks ``candidate``, as scored, meet the goal."""
        logits = module(quantize(candidate * x + (1 - candidate) * reference)).float()
        probs = torch.softmax(logits, 1).gather(1, targets[:, None])[:, 0]
        return goal(probs, logits.argmax(1))

    def meets(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The 0/1 masks keeping each item's strongest ``keep`` ``(N,)`` values, and whether they meet the goal."""
        strongest = (rank < keep[:, None]).to(mask.dtype).view_as(mask)
        candidate = strongest if game == "preserve" else 1 - strongest
        return candidate, meets_goal(candidate)

    result = mask.clone()
    count, device = mask.shape[0], mask.device
    shares = torch.tensor([max(1, round(share * values)) for share in BINARY_SHARES], device=device)
    # Binary search per item over the share grid: below ``low`` nothing met the goal, ``high`` met it
    # (len(shares): none has yet).
    low = torch.full((count,), -1, dtype=torch.long, device=device)
    high = torch.full((count,), len(shares), dtype=torch.long, device=device)
    while bool((high - low > 1).any()):
        active = high - low > 1
        middle = torch.where(active, (low + high) // 2, high.clamp(max=len(shares) - 1))
        candidate, met = meets(shares[middle])
        accepted = active & met
        result[accepted] = candidate[accepted]
        high = torch.where(accepted, middle, high)
        low = torch.where(active & ~met, middle, low)
    found = high < len(shares)
    if not bool(found.all()):
        # The search assumes the goal holds from some share on. Where it found none and the soft mask
        # misses the goal too, sweep the grid from the smallest share: a 0/1 mask may still rescue it.
        sweep = ~found & ~meets_goal(mask)
        for index in range(len(shares)):
            if not bool(sweep.any()):
                break
            candidate, met = meets(shares[index].expand(count))
            accepted = sweep & met
            result[accepted] = candidate[accepted]
            high = torch.where(accepted, torch.full_like(high, index), high)
            low = torch.where(accepted, torch.full_like(low, index - 1), low)
            sweep &= ~accepted
        found = high < len(shares)
    upper = torch.where(found, shares[high.clamp(max=len(shares) - 1)], torch.full_like(high, values))
    lower = torch.where(low >= 0, shares[low.clamp(min=0)], torch.zeros_like(low))
    # Bisect between the share that missed and the one that met: the grid is 1.2x apart, so the coarse
    # choice keeps up to 20 % more than needed; each round halves that gap.
    for _ in range(BISECT_ROUNDS):
        active = found & (upper - lower > 1)
        if not active.any():
            break
        middle = torch.where(active, (lower + upper) // 2, upper)
        candidate, met = meets(middle)
        accepted = active & met
        result[accepted] = candidate[accepted]
        upper = torch.where(accepted, middle, upper)
        lower = torch.where(active & ~met, middle, lower)
    return result


class ReferenceCache:
    """The per-image work :func:`explain` does before optimising -- the reference forward pass (the
    defense's bounds ``h(x)`` and the logits) and the reference image ``r`` -- kept for the ``size`` most
    recently used (image, model, device, settings); ``size=0`` keeps nothing.

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

    def record(self, module: nn.Module, image: tuple | None, x: torch.Tensor, activation_filter) -> torch.Tensor:
        """Run (or reuse) the reference forward pass on ``x`` (``image``: its :meth:`image_key`) -> logits
        ``(N, K)``; ``activation_filter`` holds the bounds afterwards."""
        if image is None:  # nothing is kept
            return _record(module, x, activation_filter)
        key = ("record", id(module), x.device, image, activation_filter.settings)
        cached = self._get(key)
        if cached is not None:
            logits, bounds = cached
            activation_filter.restore(bounds)
            return logits
        logits = _record(module, x, activation_filter)
        self._put(key, (logits, activation_filter.recorded))
        return logits

    def reference(self, classifier: ClassifierModel, image: tuple | None, x: torch.Tensor, config: FGVisConfig):
        """The reference ``r`` for ``x`` (``image``: its :meth:`image_key`; see :func:`_reference`),
        computed or reused."""
        if image is None:
            return _reference(classifier, x, config)
        key = (
            "reference",
            x.device,
            image,
            config.reference,
            config.blur_sigma,
            classifier.preprocessing if config.reference == "black" else None,
        )
        cached = self._get(key)
        if cached is None:
            cached = _reference(classifier, x, config)
            self._put(key, cached)
        return cached.clone()  # the caller's result must not share memory with the cache

    def _get(self, key: tuple):
        if key not in self._entries:
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return self._entries[key]

    def _put(self, key: tuple, value) -> None:
        self._entries[key] = value
        while len(self._entries) > 2 * self.size:  # a record and a reference entry per image
            self._entries.popitem(last=False)


def _digest(tensor: torch.Tensor) -> tuple:
    """Identity of a CPU tensor's values: shape and a BLAKE2 hash of its bytes (~1 ms for a 224x224 image)."""
    data = tensor.detach().contiguous().numpy().tobytes()
    return tuple(tensor.shape), hashlib.blake2b(data, digest_size=16).hexdigest()


def _record(module: nn.Module, x: torch.Tensor, activation_filter: ActivationFilter) -> torch.Tensor:
    """The reference forward pass on ``x``: -> logits; ``activation_filter`` holds the bounds afterwards."""
    with torch.no_grad(), activation_filter.recording(module):
        return module(x)


def _unchanged(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


#: A preserved explanation whose target probability is at least this many times the photo's, and
#: :data:`INFLATION_RISE` higher, gets a note: the mask amplified the class instead of keeping it.
INFLATION_RATIO = 2.0
INFLATION_RISE = 0.2


def _item_notes(result: Explanation, classifier: ClassifierModel) -> list[str]:
    """What a reviewer must know about single items of a finished run: a target that is not the model's
    top-1 on the image, a preserved explanation that inflates the score, and a goal that was not met
    (items numbered from 1 in the whole batch)."""
    notes = []
    count = len(result)
    for index in range(count):
        item = f"item {index + 1}: " if count > 1 else ""
        p_x, p_e = float(result.prob_original[index]), float(result.prob_explanation[index])
        top1 = int(result.top1_original[index])
        if top1 != int(result.target[index]):
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
        if not bool(result.goal_met[index]) and not result.cancelled:
            config = result.config
            if result.game == "preserve":
                goal = f"p(e) >= {config.preserve_ratio:g} x {p_x:.3g}, target kept top-1"
            else:
                goal = f"p(e) <= {config.delete_ratio:g} x {p_x:.3g}"
            notes.append(
                f"{item}the {result.game} goal ({goal}) was not met within {config.steps} steps: p(e) = {p_e:.3g}; "
                "the mask shown is the one that came closest"
            )
    return notes


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


def _reference(classifier: ClassifierModel, x: torch.Tensor, config: FGVisConfig) -> torch.Tensor:
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


def _fmt(values: torch.Tensor) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values.tolist()) + "]"
