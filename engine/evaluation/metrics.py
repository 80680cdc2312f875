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

from engine.core.defense import ACTIVATION_FUNCTIONS
from engine.core.explanation import Explanation, FGVisConfig, Game
from engine.core.optimisation import goal_met as fgvis_goal_met
from engine.core.reference import gaussian_blur
from engine.models.loading import ClassifierModel


def make_reference(x: torch.Tensor, kind: str = "blur", sigma: float = 10.0) -> torch.Tensor:
    """What removed pixels become: ``"zero"`` (the input space's 0), ``"blur"`` (Gaussian, ``sigma``)."""
    if kind == "zero":
        return torch.zeros_like(x)
    if kind == "blur":
        return gaussian_blur(x, sigma)
    raise ValueError(f"reference must be 'zero' or 'blur', not {kind!r}")


def ranking(evidence: torch.Tensor, margin: int = 0) -> torch.Tensor:
    """Pixel indices ``(N, H*W)`` from most to least evidence; ``evidence`` ``(N, H, W)``.

    Ties are ranked in a fixed pseudo-random order. With ``margin`` > 0 every pixel is ranked by the
    best rank within ``margin`` pixels of it (Euclidean distance ``<= margin``), then by its own: a
    prefix of the order is the top pixels' region dilated by ``margin`` pixels, so a deletion removes a
    region together with its border instead of leaving its outline (see :func:`deletion_insertion`).
    """
    flat = evidence.flatten(1).double()
    generator = torch.Generator().manual_seed(0)
    permutation = torch.randperm(flat.shape[1], generator=generator)
    order = permutation[torch.argsort(flat[:, permutation], dim=1, descending=True, stable=True)]
    if margin <= 0:
        return order
    count, pixels = order.shape
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(pixels).expand(count, -1))
    nearest = -_max_filter(-rank.view(evidence.shape).double(), _disc(margin, inclusive=True))
    return torch.argsort(nearest.flatten(1).long() * pixels + rank, dim=1)


def _disc(radius: int, *, inclusive: bool) -> list[tuple[int, int]]:
    """Offsets ``(dy, dx)`` with ``dy^2 + dx^2 <= radius^2`` (``inclusive``) or ``< max(radius, 1)^2``
    (TorchRay's pointing tolerance; radius 0 or 1: the centre alone)."""
    limit = radius * radius if inclusive else max(radius, 1) ** 2 - 1
    span = range(-radius, radius + 1)
    return [(dy, dx) for dy in span for dx in span if dy * dy + dx * dx <= limit]


def _max_filter(maps: torch.Tensor, offsets: list[tuple[int, int]]) -> torch.Tensor:
    """Maximum of ``maps`` ``(N, H, W)`` float over the neighbourhood ``offsets`` (outside = ignored)."""
    radius = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    height, width = maps.shape[1:]
    padded = torch.nn.functional.pad(maps, (radius,) * 4, value=-math.inf)
    out = torch.full_like(maps, -math.inf)
    for dy, dx in offsets:
        shifted = padded[:, radius + dy : radius + dy + height, radius + dx : radius + dx + width]
        out = torch.maximum(out, shifted)
    return out


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
    margin: int = 0,
) -> Curve:
    """Petsiuk et al. (2018): remove (``deletion``, from ``x`` towards ``reference``) or add
    (``insertion``, from ``reference`` towards ``x``) pixels in order of evidence, ``step`` of all pixels
    at a time, and record the target probability. Lower deletion AUC and higher insertion AUC are
    better.

    ``margin`` > 0 ranks the pixels with :func:`ranking`'s margin: each step changes exactly the same
    number of pixels, but a region is removed (inserted) together with the pixels within ``margin`` of
    it. Replacing exactly an object's pixels by a blurred copy leaves its outline, which a CNN still
    recognises (synthetic shapes: the ground-truth mask as a map then scores worse than a random map;
    with a 2-pixel margin it scores better)."""
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', not {mode!r}")
    count, _, height, width = x.shape
    pixels = height * width
    levels = max(1, round(1 / step))
    fractions = np.linspace(0.0, 1.0, levels + 1)
    order = ranking(evidence.cpu(), margin).to(x.device)
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
    auc = np.asarray(np.trapezoid(probs, fractions, axis=1))  # (N,)
    return Curve(fractions, probs, auc)


@torch.no_grad()
def delete_top(
    module: nn.Module,
    x: torch.Tensor,
    evidence: torch.Tensor,
    targets: torch.Tensor,
    reference: torch.Tensor,
    budget: Sequence[int] | np.ndarray,
) -> np.ndarray:
    """Target probability ``(N,)`` after replacing each item's ``budget[i]`` highest-evidence pixels
    (:func:`top_pixels`, all channels) by the reference: the paper's equal-budget deletion protocol.
    For an FGVis deletion map with ``budget = mask_budget(mask)`` this is FGVis binarised at its own
    budget."""
    count, _, height, width = x.shape
    deleted = top_pixels(evidence, budget).to(x.device)
    images = torch.where(deleted.view(count, 1, height, width), reference, x)
    return torch.softmax(module(images).float(), 1).gather(1, targets[:, None].to(x.device))[:, 0].cpu().numpy()


def top_pixels(evidence: torch.Tensor, budget: Sequence[int] | np.ndarray) -> torch.Tensor:
    """The binarised map: ``(N, H, W)`` bool, True on each item's ``budget[i]`` highest-evidence pixels of
    ``evidence`` ``(N, H, W)`` (ties in :func:`ranking`'s fixed order)."""
    order = ranking(evidence.cpu())
    chosen = torch.zeros(order.shape, dtype=torch.bool)
    for item in range(len(order)):
        chosen[item, order[item, : int(budget[item])]] = True
    return chosen.view(evidence.shape)


def mask_budget(mask: torch.Tensor) -> np.ndarray:
    """Pixels an FGVis deletion mask ``(N, C, H, W)`` removes: ``round(sum(1 - mean_c(m)))`` per item,
    i.e. its soft deletion expressed as a number of whole pixels (at least 1)."""
    return np.maximum(1, (1.0 - mask.mean(1)).flatten(1).sum(1).round().long().cpu().numpy())


def goal_met(
    game: Game,
    config: FGVisConfig,
    prob: torch.Tensor,
    top1: torch.Tensor,
    targets: torch.Tensor,
    prob_original: torch.Tensor,
    top1_original: torch.Tensor,
) -> np.ndarray:
    """``(N,)`` bool numpy: FGVis's goal for ``game`` (:func:`engine.core.optimisation.goal_met`, the rule the
    optimisation itself uses) on CPU copies of the arguments."""
    tensors = (prob, top1, targets, prob_original, top1_original)
    return fgvis_goal_met(game, config, *(t.cpu() for t in tensors)).numpy()


@dataclass
class RoundTrip:
    """The 8-bit round trip of a batch of FGVis explanations (all ``(N,)``).

    Attributes
    ----------
    prob
        Target probability on the explanation quantised to 8-bit pixels and back, 0..1.
    goal_met
        The game's goal (:func:`goal_met`) holds on the 8-bit picture.
    goal_met_float
        The game's goal holds on ``e`` itself (float, as optimised).
    """

    prob: np.ndarray
    goal_met: np.ndarray
    goal_met_float: np.ndarray

    @property
    def survival_rate(self) -> float:
        """Share, 0..1, of the explanations meeting their goal as floats that still meet it as 8-bit
        pictures (NaN when none met it)."""
        met = self.goal_met_float
        return float(self.goal_met[met].mean()) if met.any() else math.nan


def round_trip_8bit(model: ClassifierModel, result: Explanation) -> RoundTrip:
    """Quantise each explanation ``e`` of ``result`` to the 8-bit RGB picture the app saves and read it
    back into the model's input space (:meth:`~engine.models.preprocess.Preprocessing.quantize` of
    ``result.preprocessing``, the same values as :meth:`~engine.core.explanation.Explanation.explanation_image`
    re-scored by ``engine.results.record``; a PNG is lossless, so this is what the exported file scores), and
    score it with ``model``."""
    probs = model.probabilities(result.preprocessing.quantize(result.explanation))
    targets = result.target.cpu()
    prob = probs.gather(1, targets[:, None])[:, 0]
    common = {"targets": targets, "prob_original": result.prob_original, "top1_original": result.top1_original}
    after = goal_met(result.game, result.config, prob, probs.argmax(1), **common)
    before = goal_met(result.game, result.config, result.prob_explanation, result.top1_explanation, **common)
    return RoundTrip(prob.numpy(), after, before)


def pointing_game(evidence: torch.Tensor, masks: torch.Tensor, tolerance: int = 0, seed: int = 0) -> np.ndarray:
    """The pointing game (Zhang et al. 2016) with TorchRay's tolerance.

    Parameters
    ----------
    evidence
        ``(N, H, W)`` maps, higher = more evidence.
    masks
        ``(N, H, W)`` ground truth (bool or 0/1).
    tolerance
        A point hits if a ground-truth pixel lies at squared distance ``< tolerance^2`` from it (a disc,
        as in TorchRay's reference implementation); 0 or 1: the point's own pixel.
    seed
        Where several pixels share the maximum, the point is one of them drawn by a local
        ``numpy.random.default_rng(seed)`` (in item order), not the first in raster order; the global
        RNGs are not used.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` bool hits. Items whose map is all zero (or negative) point nowhere and count as misses.
    """
    accepted = _near(masks, tolerance).flatten(1)
    flat = evidence.flatten(1)
    peaks = flat.amax(1)
    rng = np.random.default_rng(seed)
    hits = np.zeros(len(flat), dtype=bool)
    for item in range(len(flat)):
        candidates = torch.nonzero(flat[item] == peaks[item]).flatten()
        point = candidates[int(rng.integers(len(candidates)))]
        hits[item] = bool(accepted[item, point]) and bool(peaks[item] > 0)
    return hits


def pointing_chance(masks: torch.Tensor, tolerance: int = 0) -> np.ndarray:
    """``(N,)`` the pointing game's chance level per item of ``masks`` ``(N, H, W)``: the share of pixels,
    0..1, where a uniformly random point would hit with this ``tolerance`` (see :func:`pointing_game`)."""
    return _near(masks, tolerance).flatten(1).double().mean(1).numpy()


def _near(masks: torch.Tensor, tolerance: int) -> torch.Tensor:
    """``(N, H, W)`` bool: pixels at squared distance ``< max(tolerance, 1)^2`` from a mask pixel."""
    return _max_filter(masks.double(), _disc(tolerance, inclusive=False)) > 0


def concentration(evidence: torch.Tensor, top: float = 0.1) -> np.ndarray:
    """How concentrated the evidence is: the share of the total held by the strongest ``top`` of pixels.

    Parameters
    ----------
    evidence
        ``(N, H, W)`` maps, or ``(N, C, H, W)`` (e.g. an FGVis preservation mask), averaged over channels.
        Negative values are not evidence and count as 0.
    top
        Fraction of the pixels, (0, 1]; ``round(top * H * W)`` of them (at least 1).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` in [top, 1] (up to rounding): ``top`` for a uniform map (0.1 by default), 1.0 when all
        the evidence lies in the strongest tenth of the image. An all-zero map counts as uniform.
    """
    maps = evidence.mean(1) if evidence.dim() == 4 else evidence
    flat = maps.clamp(min=0).flatten(1).double()
    count = max(1, round(top * flat.shape[1]))
    total = flat.sum(1)
    strongest = flat.topk(count, dim=1).values.sum(1)
    share = torch.where(total > 0, strongest / total.clamp(min=1e-300), torch.full_like(total, count / flat.shape[1]))
    return share.numpy()


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

    The new weights are drawn from a local ``torch.Generator`` seeded with ``seed`` (see
    :func:`_reinitialise`): every method sees the same randomised weights whatever random numbers it
    draws itself, and the caller's global RNG state is left as it was.

    Returns ``[(name of the last layer randomised, Spearman rho per item), ...]`` from the top layer down.
    A method that explains the model should lose its correlation quickly (rho near 0)."""
    original = method(module)
    randomised = copy.deepcopy(module)
    layers = [(name, sub) for name, sub in randomised.named_modules() if _is_weight_layer(sub)]
    results = []
    generator = torch.Generator().manual_seed(seed)
    count = len(layers)
    wanted = min(max_stages, count)
    stages = {round(1 + i * (count - 1) / max(1, wanted - 1)) for i in range(wanted)}
    for done, (name, sub) in enumerate(reversed(layers), start=1):
        _reinitialise(sub, generator)
        if done in stages:
            results.append((name, spearman(original, method(randomised))))
    return results


def _is_weight_layer(module: nn.Module) -> bool:
    """A layer with a learned weight matrix or kernel (convolution, linear)."""
    weight = getattr(module, "weight", None)
    return isinstance(weight, torch.Tensor) and weight.dim() >= 2


@torch.no_grad()
def _reinitialise(layer: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialisation of convolution and linear layers, ``U(-1/sqrt(fan_in),
    1/sqrt(fan_in))`` for the weight and the bias (``fan_in = weight[0].numel()``), drawn on the CPU from
    ``generator`` (so the values do not depend on the layer's device) and copied in place."""
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)  # a weight layer (_is_weight_layer)
    bound = 1.0 / math.sqrt(weight[0].numel())
    for parameter in (weight, getattr(layer, "bias", None)):
        if isinstance(parameter, torch.Tensor):
            values = torch.empty(parameter.shape, dtype=torch.float64).uniform_(-bound, bound, generator=generator)
            parameter.copy_(values)


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
