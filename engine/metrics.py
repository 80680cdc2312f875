"""Faithfulness, localisation, sanity and sparsity metrics for evidence maps (no Qt).

Conventions: ``x`` ``(N, C, H, W)`` in the model's input space, ``evidence`` ``(N, H, W)`` (higher =
more evidence for the target), ``targets`` ``(N,)``; probabilities are softmax values in [0, 1]. A
"pixel" is a spatial location (all channels together). Pixels of equal evidence are ranked in a fixed
pseudo-random order (seed 0), so ties neither favour the image's top-left corner nor change run to run.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .defense import ACTIVATION_FUNCTIONS
from .fgvis import gaussian_blur


def make_reference(x: torch.Tensor, kind: str = "blur", sigma: float = 10.0) -> torch.Tensor:
    """What removed pixels become: ``"zero"`` (the input space's 0), ``"blur"`` (Gaussian, ``sigma``)."""
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "blur":
        return gaussian_blur(x, sigma)
    raise ValueError(f"reference must be 'zero' or 'blur', not {kind!r}")


def ranking(evidence: torch.Tensor) -> torch.Tensor:
    """``(N, H*W)`` pixel indices from most to least evidence, ties in a fixed pseudo-random order."""
    flat = evidence.flatten(1).double()
    generator = torch.Generator().manual_seed(0)
    permutation = torch.randperm(flat.shape[1], generator=generator)
    order = torch.argsort(flat[:, permutation], dim=1, descending=True, stable=True)
    return permutation[order]


@dataclass
class Curve:
    """``fractions`` ``(K,)`` of pixels removed (deletion) or inserted (insertion), 0..1;
    ``probs`` ``(N, K)`` target probability at each; ``auc`` ``(N,)`` trapezoidal area under it."""

    fractions: np.ndarray
    probs: np.ndarray
    auc: np.ndarray


@torch.no_grad()
def deletion_insertion(
    module: nn.Module,
    x: torch.Tensor,
    evidence: torch.Tensor,
    targets: torch.Tensor,
    reference: torch.Tensor,
    *,
    mode: str = "deletion",
    step: float = 1 / 32,
    batch_size: int = 32,
) -> Curve:
    """Petsiuk et al. (2018): remove (``deletion``, from ``x`` towards ``reference``) or add
    (``insertion``, from ``reference`` towards ``x``) pixels in order of evidence, ``step`` of all pixels
    at a time, and record the target probability. Lower deletion AUC and higher insertion AUC are
    better."""
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', not {mode!r}")
    count, _, height, width = x.shape
    pixels = height * width
    levels = max(1, round(1 / step))
    fractions = np.linspace(0.0, 1.0, levels + 1)
    order = ranking(evidence.cpu()).to(x.device)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(pixels, device=x.device).expand(count, -1))
    probs = np.empty((count, len(fractions)))
    for item in range(count):
        images = []
        for fraction in fractions:
            changed = (rank[item] < round(fraction * pixels)).view(1, height, width)
            start, end = (x[item], reference[item]) if mode == "deletion" else (reference[item], x[item])
            images.append(torch.where(changed, end, start))
        stack = torch.stack(images)
        values = []
        for low in range(0, len(stack), batch_size):
            logits = module(stack[low : low + batch_size])
            values.append(torch.softmax(logits.float(), 1)[:, targets[item]])
        probs[item] = torch.cat(values).cpu().numpy()
    auc = np.trapezoid(probs, fractions, axis=1)
    return Curve(fractions, probs, auc)


@torch.no_grad()
def delete_top(
    module: nn.Module, x: torch.Tensor, evidence: torch.Tensor, targets: torch.Tensor, reference: torch.Tensor,
    budget: Sequence[int],
) -> np.ndarray:  # fmt: skip
    """Target probability ``(N,)`` after replacing each item's ``budget[i]`` highest-evidence pixels
    by the reference (the paper's equal-budget deletion protocol)."""
    count, _, height, width = x.shape
    order = ranking(evidence.cpu()).to(x.device)
    deleted = torch.zeros(count, height * width, dtype=torch.bool, device=x.device)
    for item in range(count):
        deleted[item, order[item, : int(budget[item])]] = True
    images = torch.where(deleted.view(count, 1, height, width), reference, x)
    return torch.softmax(module(images).float(), 1).gather(1, targets[:, None].to(x.device))[:, 0].cpu().numpy()


def mask_budget(mask: torch.Tensor) -> np.ndarray:
    """Pixels an FGVis deletion mask ``(N, C, H, W)`` removes: ``round(sum(1 - mean_c(m)))`` per item,
    i.e. its soft deletion expressed as a number of whole pixels (at least 1)."""
    return np.maximum(1, (1.0 - mask.mean(1)).flatten(1).sum(1).round().long().cpu().numpy())


def pointing_game(evidence: torch.Tensor, masks: torch.Tensor, tolerance: int = 0) -> np.ndarray:
    """``(N,)`` bool: the evidence maximum lies on the ground-truth mask ``(N, H, W)`` dilated by
    ``tolerance`` pixels (Zhang et al. 2016). Items with an all-zero map count as misses."""
    masks = masks.bool()
    if tolerance > 0:
        size = 2 * tolerance + 1
        masks = torch.nn.functional.max_pool2d(masks[:, None].float(), size, stride=1, padding=tolerance)[:, 0] > 0
    flat = evidence.flatten(1)
    peak = flat.argmax(1)
    hits = masks.flatten(1).gather(1, peak[:, None])[:, 0]
    return (hits & (flat.amax(1) > 0)).numpy()


def energy_inside(evidence: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    """``(N,)`` share of the (non-negative) evidence that lies on the ground-truth mask, 0..1."""
    evidence = evidence.clamp(min=0).flatten(1).double()
    inside = (evidence * masks.flatten(1).double()).sum(1)
    return (inside / evidence.sum(1).clamp(min=1e-12)).numpy()


def spearman(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Spearman rank correlation per item of two maps ``(N, H, W)`` (average ranks for ties)."""
    out = []
    for u, v in zip(a.flatten(1).double().numpy(), b.flatten(1).double().numpy(), strict=True):
        ru, rv = _average_ranks(u), _average_ranks(v)
        ru, rv = ru - ru.mean(), rv - rv.mean()
        denominator = math.sqrt(float((ru * ru).sum() * (rv * rv).sum()))
        out.append(float((ru * rv).sum()) / denominator if denominator > 0 else 0.0)
    return np.asarray(out)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=np.float64)
    _, inverse = np.unique(values, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks)
    counts = np.bincount(inverse)
    return (sums / counts)[inverse]


def randomisation_check(
    method: Callable[[nn.Module], torch.Tensor], module: nn.Module, seed: int = 0, max_stages: int = 6
) -> list[tuple[str, np.ndarray]]:
    """Cascading model-parameter randomisation (Adebayo et al. 2018): re-initialise the weight layers
    (convolutions, linear; normalisation layers are left alone) from the output towards the input, one
    more at each stage, and compare the map that ``method(model) -> (N, H, W)`` gives with the
    original's.

    Deep networks have many layers: the map is compared after at most ``max_stages`` stages, spread
    evenly over the cascade (always including the top layer alone and all layers); every layer up to a
    stage is randomised before it.

    Returns ``[(name of the last layer randomised, Spearman rho per item), ...]`` from the top layer down.
    A method that explains the model should lose its correlation quickly (rho near 0)."""
    original = method(module)
    randomised = copy.deepcopy(module)
    layers = [(name, sub) for name, sub in randomised.named_modules() if _is_weight_layer(sub)]
    results = []
    torch.manual_seed(seed)
    count = len(layers)
    wanted = min(max_stages, count)
    stages = {round(1 + i * (count - 1) / max(1, wanted - 1)) for i in range(wanted)}
    for done, (name, sub) in enumerate(reversed(layers), start=1):
        sub.reset_parameters()
        if done in stages:
            results.append((name, spearman(original, method(randomised))))
    return results


def _is_weight_layer(module: nn.Module) -> bool:
    """A layer with a learned weight matrix or kernel (convolution, linear) that can re-initialise itself."""
    weight = getattr(module, "weight", None)
    return isinstance(weight, torch.Tensor) and weight.dim() >= 2 and hasattr(module, "reset_parameters")


class _ActivationRecorder(TorchFunctionMode):
    """Collects the output of every activation function call (as the defense sees them)."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        if func in ACTIVATION_FUNCTIONS and isinstance(output, torch.Tensor):
            self.outputs.append(output.detach().clone())
        return output


@torch.no_grad()
def activations(module: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Every activation function's output ``h`` on ``x``, in call order."""
    recorder = _ActivationRecorder()
    with recorder:
        module(x)
    return recorder.outputs


def excess_activation(
    module: nn.Module, x: torch.Tensor, e: torch.Tensor, atol: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """The adversarial-evidence monitor: per activation call, averaged over items, the fraction of units
    with ``h(e) > h(x) + atol`` and the share of the activation mass ``sum h(e)`` in the excess
    ``sum max(0, h(e) - h(x))``. Returns ``(unit_fractions, mass_fractions)``, each ``(layers,)``."""
    reference, explained = activations(module, x), activations(module, e)
    if len(reference) != len(explained):
        raise ValueError("the model made a different number of activation calls on x and on e")
    units, mass = [], []
    for hx, he in zip(reference, explained, strict=True):
        excess = (he - hx).clamp(min=0)
        units.append(float((he > hx + atol).float().mean()))
        mass.append(float(excess.sum() / he.abs().sum().clamp(min=1e-12)))
    return np.asarray(units), np.asarray(mass)


def sparsity(evidence: torch.Tensor, threshold: float = 0.1) -> dict[str, np.ndarray]:
    """Per item of maps ``(N, H, W)`` scaled to max 1: ``l1`` (mean evidence), ``active`` (share of pixels
    with evidence >= ``threshold``) and ``high_frequency`` (share of the map's spectral energy, mean
    removed, above half the Nyquist frequency: fine-grained, speckled maps score high)."""
    maps = evidence.double()
    spectrum = torch.fft.fft2(maps - maps.mean((1, 2), keepdim=True)).abs().square()
    fy = torch.fft.fftfreq(maps.shape[1], dtype=torch.float64).abs().view(-1, 1)
    fx = torch.fft.fftfreq(maps.shape[2], dtype=torch.float64).abs().view(1, -1)
    high = (torch.sqrt(fy**2 + fx**2) > 0.25).expand_as(spectrum[0])
    share = spectrum[:, high].sum(1) / spectrum.flatten(1).sum(1).clamp(min=1e-30)
    return {
        "l1": maps.flatten(1).mean(1).numpy(),
        "active": (maps >= threshold).flatten(1).double().mean(1).numpy(),
        "high_frequency": share.numpy(),
    }
