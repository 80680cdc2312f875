"""The mask optimisation of one batch (docs/METHOD.md §2): the optimiser on the mask, automatic lambda,
the best mask so far per item, and the game's goal.

:class:`Optimisation` is what :func:`engine.core.fgvis.explain` runs step by step, and what the speed
benchmark and the tests drive directly. A step: ``e = m*x + (1-m)*r`` (optionally as 8-bit pixels),
the model's forward and backward pass through the defense's gradient filter, the sparsity term's
gradient joined to the score's, the optimiser's step, clipping to [0, 1], and the goal and lambda
bookkeeping."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .defense import ActivationFilter
from .explanation import FGVisConfig, Game, StepState
from .model_pass import TRIAL_ROUNDS, ModelPass, record_cuda_graph


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
            _copy_rows(self.best.mask, self.mask.detach(), closer)
        value = self.sense * size
        better = met & (value < self.best.value)
        self.best.last_improved[better & (value < self.best.value - self.config.tolerance)] = step
        if better.any():
            self.best.value = torch.where(better, value, self.best.value)
            _copy_rows(self.best.mask, self.mask.detach(), better)
            for saved, current in zip(self.best.optimizer_state, self.optimizer.state(), strict=True):
                _copy_rows(saved, current, better)
            self.best.lambda_ = torch.where(better, self.lambda_, self.best.lambda_)
            self.best.found |= better

    def _control_lambda(self, met: torch.Tensor) -> None:
        rate = self.config.lambda_rate
        self.lambda_ = torch.where(met, self.lambda_ * math.exp(rate), self.lambda_ * math.exp(-rate))
        rollback = ~met & self.best.found
        if rollback.any():
            _copy_rows(self.mask.detach(), self.best.mask, rollback)
            for saved, current in zip(self.best.optimizer_state, self.optimizer.state(), strict=True):
                _copy_rows(current, saved, rollback)
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


def _copy_rows(target: torch.Tensor, source: torch.Tensor, rows: torch.Tensor) -> None:
    """``target[rows] = source[rows]`` for ``(N, ...)`` tensors and ``(N,)`` bool ``rows``; one in-place copy
    when every row is selected (the usual case at batch 1: boolean indexing gathers a copy first)."""
    if bool(rows.all()):
        target.copy_(source)
    else:
        target[rows] = source[rows]


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
