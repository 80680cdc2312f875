"""Sharpening an optimised mask into the smallest 0/1 mask that still plays the game, checked as the 8-bit
picture the app saves (docs/METHOD.md §2; measured in docs/DEFAULTS.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .explanation import Game

#: Shares of a mask's values that :func:`binarize` tries, smallest first: 0.5 % to 48 %, each 1.2x the last.
BINARY_SHARES = tuple(round(0.005 * 1.2**k, 4) for k in range(26))
#: Rounds of bisection after the :data:`BINARY_SHARES` sweep (each one forward pass of the batch): the
#: share kept ends within 1.2 ** (1 / 2 ** rounds) of the smallest that meets the goal on the path.
BISECT_ROUNDS = 4


@dataclass
class Binarized:
    """What :func:`binarize_scored` returns: the masks, and for each item whose mask is a checked 0/1
    mask the logits its explanation scored, so that the caller need not score it again.

    Attributes
    ----------
    mask
        ``(N, C, H, W)`` in [0, 1].
    logits
        ``(N, K)`` float32: the scored explanation's logits where ``scored``, anything elsewhere;
        ``(N, 0)`` when no item was scored.
    scored
        ``(N,)`` bool: ``mask`` is a 0/1 mask whose explanation met the goal scoring ``logits``.
    """

    mask: torch.Tensor
    logits: torch.Tensor
    scored: torch.Tensor


def binarize(*args, **kwargs) -> torch.Tensor:
    """:func:`binarize_scored`'s masks alone, same parameters."""
    return binarize_scored(*args, **kwargs).mask


@torch.no_grad()
def binarize_scored(
    module: nn.Module,
    x: torch.Tensor,
    reference: torch.Tensor,
    mask: torch.Tensor,
    game: Game,
    targets: torch.Tensor,
    goal: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    quantize: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Binarized:
    """Sharpen an optimised mask into a 0/1 mask where one plays the game (docs/METHOD.md §2; measured in
    docs/DEFAULTS.md).

    A candidate keeps the strongest share ``f`` of the evidence values (``m`` to preserve, ``1 - m`` to
    delete; per pixel *and* channel, so the mask stays full-resolution and per-channel) whole (preserve:
    ``m = 1`` there, 0 elsewhere) or removes them whole (delete: ``m = 0`` there, 1 elsewhere), and is
    scored as its explanation passed through ``quantize``. Only values with evidence (> 0) are ever
    chosen: a share larger than their count keeps them all and nothing more, because values without
    evidence are all equal and the sort would choose among them by their position in the image.

    A binary search over the shares of :data:`BINARY_SHARES` (the goal is taken to hold from some share
    on: more evidence kept, or more removed, helps the game) finds the smallest share that meets ``goal``
    in at most 5 forward passes instead of up to 26 (each item's grid ends at the first share that keeps
    all its values with evidence); :data:`BISECT_ROUNDS` rounds of bisection between it and the share
    below then look for a smaller count of values that still meets it. Where the search finds no share
    and the soft mask misses the goal as well, the grid is swept from the smallest share (a 0/1 mask may
    still meet it: the goal need not hold from one share on), skipping the shares the search scored and
    missed. Every mask returned was checked; items where no share meets the goal keep their soft mask.

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
        ``(p(target) (N,), top-1 (N,)) -> (N,) bool``: the game's goal (:func:`engine.core.optimisation.goal_met`).
    quantize
        Applied to each candidate explanation before it is scored: the 8-bit picture the app saves,
        read back (:meth:`~engine.models.preprocess.Preprocessing.quantize`), so a chosen mask survives export.

    Returns
    -------
    Binarized
        Masks ``(N, C, H, W)`` in [0, 1] (0/1 where a share met the goal, else ``mask`` unchanged), with
        the logits of the 0/1 ones as scored (one forward pass fewer for the caller).
    """
    quantize = quantize or _unchanged
    evidence = (mask if game == "preserve" else 1 - mask).flatten(1)
    values = evidence.shape[1]
    # rank[i, j]: the place of value j in item i's evidence, strongest first (0).
    order = evidence.argsort(1, descending=True)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(values, device=mask.device).expand_as(order))

    def meets_goal(candidate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whether the explanations of the masks ``candidate``, as scored, meet the goal (``(N,)`` bool),
        and their logits ``(N, K)``."""
        logits = module(quantize(candidate * x + (1 - candidate) * reference)).float()
        probs = torch.softmax(logits, 1).gather(1, targets[:, None])[:, 0]
        return goal(probs, logits.argmax(1)), logits

    # Values without evidence (0) are equal: the sort would choose among them by position, not by evidence.
    has_evidence = evidence > 0

    def meets(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The 0/1 masks keeping each item's strongest ``keep`` ``(N,)`` values, whether they meet the goal,
        and their logits."""
        strongest = ((rank < keep[:, None]) & has_evidence).to(mask.dtype).view_as(mask)
        candidate = strongest if game == "preserve" else 1 - strongest
        return candidate, *meets_goal(candidate)

    result = mask.clone()
    count, device = mask.shape[0], mask.device
    logits_kept: torch.Tensor | None = None
    scored = torch.zeros(count, dtype=torch.bool, device=device)

    def accept(accepted: torch.Tensor, candidate: torch.Tensor, logits: torch.Tensor) -> None:
        """Keep ``candidate`` and its ``logits`` where ``accepted`` ``(N,)``."""
        nonlocal logits_kept
        if logits_kept is None:
            logits_kept = torch.zeros_like(logits)
        result[accepted] = candidate[accepted]
        logits_kept[accepted] = logits[accepted]
        scored.logical_or_(accepted)

    shares = torch.tensor([max(1, round(share * values)) for share in BINARY_SHARES], device=device)
    # Each item's grid ends at the first share that keeps all its values with evidence: larger shares
    # give the same mask.
    support = has_evidence.sum(1)
    limit = ((shares[None, :] < support[:, None]).sum(1) + 1).clamp(max=len(shares))
    # Binary search per item over its grid: below ``low`` nothing met the goal, ``high`` met it (``limit``:
    # none has yet).
    low = torch.full((count,), -1, dtype=torch.long, device=device)
    high = limit.clone()
    # missed[i, k]: share k was scored for item i and missed the goal (the sweep need not score it again).
    missed = torch.zeros(count, len(shares), dtype=torch.bool, device=device)
    items = torch.arange(count, device=device)
    while bool((high - low > 1).any()):
        active = high - low > 1
        middle = torch.where(active, (low + high) // 2, high.clamp(max=len(shares) - 1))
        candidate, met, logits = meets(shares[middle])
        accepted = active & met
        accept(accepted, candidate, logits)
        missed[items, middle] |= active & ~met
        high = torch.where(accepted, middle, high)
        low = torch.where(active & ~met, middle, low)
    found = high < limit
    if not bool(found.all()):
        # The search assumes the goal holds from some share on. Where it found none and the soft mask
        # misses the goal too, sweep the grid from the smallest share: a 0/1 mask may still rescue it.
        sweep = ~found & ~meets_goal(mask)[0]
        for index in range(len(shares)):
            sweep &= index < limit
            if not bool(sweep.any()):
                break
            # A share the search scored and missed, or one of the same count as the share before it
            # (tiny images), would miss again.
            if index > 0 and bool(shares[index] == shares[index - 1]):
                continue
            if not bool((sweep & ~missed[:, index]).any()):
                continue
            candidate, met, logits = meets(shares[index].expand(count))
            accepted = sweep & met
            accept(accepted, candidate, logits)
            high = torch.where(accepted, torch.full_like(high, index), high)
            low = torch.where(accepted, torch.full_like(low, index - 1), low)
            sweep &= ~accepted
        found = high < limit
    upper = torch.where(found, shares[high.clamp(max=len(shares) - 1)].minimum(support), torch.full_like(high, values))
    lower = torch.where(low >= 0, shares[low.clamp(min=0)], torch.zeros_like(low))
    # Bisect between the share that missed and the one that met: the grid is 1.2x apart, so the coarse
    # choice keeps up to 20 % more than needed; each round halves that gap.
    for _ in range(BISECT_ROUNDS):
        active = found & (upper - lower > 1)
        if not active.any():
            break
        middle = torch.where(active, (lower + upper) // 2, upper)
        candidate, met, logits = meets(middle)
        accepted = active & met
        accept(accepted, candidate, logits)
        upper = torch.where(accepted, middle, upper)
        lower = torch.where(active & ~met, middle, lower)
    if logits_kept is None:  # nothing accepted
        logits_kept = torch.zeros(count, 0, device=device)
    return Binarized(result, logits_kept, scored)


def _unchanged(tensor: torch.Tensor) -> torch.Tensor:
    return tensor
