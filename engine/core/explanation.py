"""The data an explanation run takes and returns: :class:`FGVisConfig`, :class:`StepState`,
:class:`Explanation`. Numbers in the defaults are justified in ``docs/DEFAULTS.md``.

Every field of :class:`StepState` and :class:`Explanation` says in its metadata how the results of
consecutive parts of one batch are merged (:func:`engine.core.fgvis.merge_explanations`): ``"item"`` --
one value per batch item, concatenated; ``"same"`` -- one value for the run, taken from the first part;
or the name of the rule for a run-wide value (``"max"``, ``"any"``, ``"sum"``, ``"join"``, ``"history"``).
A new field without a rule cannot be merged (:func:`merge_rule` raises), so none is silently taken from
the first part only."""

from __future__ import annotations

from dataclasses import Field, asdict, dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import torch

from engine.colormaps import apply_colormap
from engine.errors import ConfigError
from engine.models.preprocess import Geometry, Preprocessing, paste_back

# The named choices of a run, as types (for the type checker) and as tuples of their values (for checks at
# run time, argparse choices and the GUI's lists), in the order the CLI and the GUI offer them.
#: Which explanation game: keep what the decision needs (preservation), or remove it (deletion).
Game = Literal["preserve", "delete"]
#: The mask optimiser (:attr:`FGVisConfig.optimizer`).
Optimizer = Literal["adam", "sgd", "normalized"]
#: What removed pixels become (:attr:`FGVisConfig.reference`).
Reference = Literal["zero", "black", "blur"]
#: The score the game optimises (:attr:`FGVisConfig.loss`).
Loss = Literal["prob", "ce"]
#: How the sparsity term enters the optimisation (:attr:`FGVisConfig.sparsity`).
Sparsity = Literal["coupled", "proximal"]
GAMES: tuple[Game, ...] = get_args(Game)
OPTIMIZERS: tuple[Optimizer, ...] = get_args(Optimizer)
REFERENCES: tuple[Reference, ...] = get_args(Reference)
LOSSES: tuple[Loss, ...] = get_args(Loss)
SPARSITY: tuple[Sparsity, ...] = get_args(Sparsity)

#: Measured per-game learning rates (docs/DEFAULTS.md): preservation needs small steps to approach the
#: sparsest mask that keeps the decision; deletion converges in half the steps with 0.02.
DEFAULT_LR: dict[Game, float] = {"preserve": 0.05, "delete": 0.05}


@dataclass(frozen=True)
class FGVisConfig:
    """Settings of one FGVis optimisation (docs/METHOD.md §1-2).

    Attributes
    ----------
    steps
        Iteration budget (the run may stop earlier, see ``patience``).
    lr
        Learning rate of the mask optimiser; ``None``: the game's measured default
        (:data:`DEFAULT_LR`: 0.05 for both games, measured in docs/DEFAULTS.md).
    optimizer
        ``"adam"`` (default, measured), ``"normalized"`` (gradient descent with the gradient scaled to
        unit RMS per image: keeps the relative strength of pixels, which Adam's per-pixel scaling erases;
        see docs/DEFAULTS.md for when it is better) or ``"sgd"`` (the paper's plain SGD; ``lr`` then
        depends on the model's gradient scale).
    lambda_
        Weight of the sparsity term ``lambda * mean(m)``. ``None``: automatic, per image (see
        ``lambda_init``, ``lambda_rate``, ``preserve_ratio``, ``delete_ratio``).
    lambda_init, lambda_rate
        Automatic lambda starts at ``lambda_init`` and is multiplied by ``exp(+lambda_rate)`` after a step
        that met the game's goal and by ``exp(-lambda_rate)`` after one that did not, so it settles where
        the goal is just met with the sparsest mask.
    preserve_ratio
        Preservation goal: the explanation keeps ``p(e) >= preserve_ratio * p(x)`` (and keeps the target
        top-1 when it was top-1 on the image) -- "a softmax score comparable to the image's".
    delete_ratio
        Deletion goal: the explanation drives ``p(e) <= delete_ratio * p(x)``.
    reference
        What removed pixels become: ``"blur"`` (default: the image blurred with ``blur_sigma``, which a
        BatchNorm network does not ignore the way it ignores a uniform fade towards 0), ``"zero"`` (0 in
        the network's input space, the paper's ``e = m*x``) or ``"black"`` (black pixels).
    blur_sigma
        Gaussian sigma in model-input pixels for the ``"blur"`` reference.
    loss
        ``"prob"``: the target's softmax probability (paper default); ``"ce"``: its log-probability
        (cross-entropy).
    patience
        Stop when the best mask meeting the goal has not improved by ``tolerance`` (in mask mean) for this
        many steps; with a manual lambda, when the loss has not improved by ``tolerance``. 0 disables.
    tolerance
        See ``patience``.
    stop_when_deleted
        Deletion only: stop at the first step that meets the deletion goal (faster, less sparse).
    seed
        Seed of torch's RNG for the run (the loop itself is deterministic on the CPU).
    device
        ``None``: wherever the model is; ``"auto"``: CUDA if available, else CPU; or a torch device
        string. The model is moved there and stays there.
    defense_rtol, defense_atol
        Tolerance of the defense's bound comparison (rounding only; see :mod:`engine.core.defense`).
    preview_size
        Longest side, in pixels, of the evidence preview passed to ``on_step``.
    cuda_graph
        CUDA only: after the first step, record the step's forward and backward pass once as a CUDA
        graph and replay it (the GPU is otherwise bound by kernel launches). Steps 3-4 (to 6 when it
        is close) time eager passes against replays, and the graph is kept unless the eager pass was
        more than 5 % faster (:mod:`engine.core.model_pass`); if recording fails the run continues without.
        Needs a model whose forward pass does the same operations for every input (which the defense
        requires anyway).
    preview_rate_hz
        At most this many previews per second are computed (``on_step`` is still called every step, with
        ``preview=None`` in between); none at all without ``on_step``.
    sparsity
        How the sparsity term ``lambda * mean(m)`` enters the optimisation. ``"coupled"`` (default): its
        gradient joins the score's before the optimiser's step, the paper's single objective; with Adam a
        mask value falls at the full rate unless the score needs it, so masks become cut-outs.
        ``"proximal"``: a separate shrink by ``lr * lambda`` after the step (before 2026-12; it fades the
        whole image, see docs/DEFAULTS.md).
    binarize
        After the optimisation, replace each mask by the smallest 0/1 mask, made of its strongest values,
        whose explanation -- as the 8-bit picture the app saves -- still meets the game's goal
        (:func:`engine.core.binarize.binarize`: a binary search over shares, then bisection; at most 9
        forward passes, more only where no share meets the goal and the soft mask misses it; when every
        item got a 0/1 mask, the pass that accepted it is also the result's score); where none does the
        soft mask stays. Only values with evidence (> 0) are chosen. Not on cancelled runs.
    quantize
        Models that take pixels: the explanation is the 8-bit picture the app saves. The optimisation scores
        ``e = m*x + (1-m)*r`` rounded to 8-bit values, with the rounding passed straight through in the
        backward pass (its gradient is that of the unrounded ``e``), and :attr:`Explanation.explanation` is
        that picture, so the game's goal is met on what is exported, not only in float precision
        (measured in docs/DEFAULTS.md). ``False``: float ``e`` throughout (the paper).
    monitor_every
        The defense's monitor (:attr:`StepState.blocked_fraction`) counts blocked units on step 1 and every
        ``monitor_every``-th step (NaN in between); counting costs ~8 % of a step on the CPU
        (docs/BENCHMARKS.md). 1 counts every step. Replayed CUDA graphs count every step (nearly free).
    """

    steps: int = 300
    lr: float | None = None
    optimizer: Optimizer = "adam"
    lambda_: float | None = None
    lambda_init: float = 0.05
    lambda_rate: float = 0.05
    preserve_ratio: float = 0.9
    delete_ratio: float = 0.1
    reference: Reference = "blur"
    blur_sigma: float = 5.0
    loss: Loss = "prob"
    patience: int = 40
    tolerance: float = 1e-3
    stop_when_deleted: bool = False
    seed: int = 0
    device: str | None = None
    defense_rtol: float = 1e-5
    defense_atol: float = 1e-6
    preview_size: int = 64
    preview_rate_hz: float = 5.0
    cuda_graph: bool = True
    monitor_every: int = 10
    sparsity: Sparsity = "coupled"
    binarize: bool = True
    quantize: bool = True

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 1, f"steps must be at least 1, not {self.steps}"),
            (self.lr is None or self.lr > 0, f"lr must be positive or None, not {self.lr}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}"),
            (self.lambda_ is None or self.lambda_ >= 0, f"lambda_ must be >= 0 or None, not {self.lambda_}"),
            (self.lambda_init > 0, f"lambda_init must be positive, not {self.lambda_init}"),
            (self.lambda_rate > 0, f"lambda_rate must be positive, not {self.lambda_rate}"),
            (0 < self.preserve_ratio <= 1, f"preserve_ratio must be in (0, 1], not {self.preserve_ratio}"),
            (0 < self.delete_ratio < 1, f"delete_ratio must be in (0, 1), not {self.delete_ratio}"),
            (self.reference in REFERENCES, f"reference must be one of {REFERENCES}, not {self.reference!r}"),
            (self.blur_sigma > 0, f"blur_sigma must be positive, not {self.blur_sigma}"),
            (self.loss in LOSSES, f"loss must be one of {LOSSES}, not {self.loss!r}"),
            (self.patience >= 0, f"patience must be >= 0, not {self.patience}"),
            (self.preview_size >= 8, f"preview_size must be at least 8, not {self.preview_size}"),
            (self.preview_rate_hz > 0, f"preview_rate_hz must be positive, not {self.preview_rate_hz}"),
            (self.monitor_every >= 1, f"monitor_every must be at least 1, not {self.monitor_every}"),
            (self.sparsity in SPARSITY, f"sparsity must be one of {SPARSITY}, not {self.sparsity!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict:
        return asdict(self)

    def learning_rate(self, game: Game) -> float:
        """The learning rate in force for ``game``."""
        return self.lr if self.lr is not None else DEFAULT_LR[game]

    def reference_text(self) -> str:
        """The reference as a reviewer reads it: ``"blur (sigma 5 px)"``, ``"zero"`` or ``"black"``."""
        return f"blur (sigma {self.blur_sigma:g} px)" if self.reference == "blur" else self.reference


#: How the parts of a split batch are merged, per field (module docstring).
MERGE_RULES = ("item", "same", "max", "any", "sum", "join", "history")


def merged(rule: str, **options: Any) -> Any:
    """A dataclass field whose parts are merged by ``rule`` (one of :data:`MERGE_RULES`).

    Typed ``Any``, as :func:`dataclasses.field` is to a type checker, so that ``step: int = merged("same")``
    checks (the value is a :class:`dataclasses.Field`)."""
    assert rule in MERGE_RULES, rule
    return field(metadata={"merge": rule}, **options)


def merge_rule(spec: Field) -> str:
    """The merge rule of a dataclass field; a field without one is a programming error."""
    try:
        return spec.metadata["merge"]
    except KeyError:
        raise TypeError(f"the field {spec.name!r} has no merge rule (engine.core.explanation.merged)") from None


@dataclass(frozen=True)
class StepState:
    """Progress of one optimisation step; per-item values are ``(N,)`` numpy arrays (copies).

    Attributes
    ----------
    step, total
        1-based step number and the iteration budget.
    loss
        Total objective per item (score term + sparsity term) at this step.
    target_prob
        Softmax probability of the target on the current explanation ``e``, 0..1.
    mask_mean
        Mean of the mask, 0..1 (1 = the whole image kept).
    lambda_
        Sparsity weight used at this step.
    blocked_fraction
        Fraction of activation units whose gradient the defense blocked (they left their bounds:
        adversarial evidence); 0 without the defense; NaN on steps the monitor did not count (see
        ``FGVisConfig.monitor_every``).
    goal_met
        Whether this step's explanation met the game's goal (see :class:`FGVisConfig`).
    preview
        Only in ``on_step`` calls, at most ``preview_rate_hz`` times a second (always at step 1):
        evidence maps ``(N, h, w)`` float32 in 0..1, longest side ``preview_size``; otherwise ``None``,
        and always ``None`` in the stored history.
    """

    step: int = merged("same")
    total: int = merged("same")
    loss: np.ndarray = merged("item")
    target_prob: np.ndarray = merged("item")
    mask_mean: np.ndarray = merged("item")
    lambda_: np.ndarray = merged("item")
    blocked_fraction: np.ndarray = merged("item")
    goal_met: np.ndarray = merged("item")
    # Per item, but only in on_step calls: the stored history (what is merged) always has None here.
    preview: np.ndarray | None = merged("same", default=None)

    def to_dict(self) -> dict:
        return {
            "step": self.step,
            "loss": self.loss.tolist(),
            "target_prob": self.target_prob.tolist(),
            "mask_mean": self.mask_mean.tolist(),
            "lambda": self.lambda_.tolist(),
            # None where the monitor did not count (NaN is not JSON)
            "blocked_fraction": [None if np.isnan(v) else float(v) for v in self.blocked_fraction],
            "goal_met": self.goal_met.tolist(),
        }


@dataclass
class Explanation:
    """Result of :func:`engine.explain` for a batch of ``N`` items (tensors on the CPU).

    Attributes
    ----------
    mask
        ``(N, 3, H, W)`` float32 in [0, 1], one value per pixel and colour channel (1 = keep the pixel).
    explanation
        ``(N, 3, H, W)`` the explanation ``e = m*x + (1-m)*r`` in the model's input space.
    input, reference
        ``(N, 3, H, W)`` the image ``x`` and reference ``r`` in the model's input space.
    target
        ``(N,)`` int64 class indices; ``target_labels`` their names.
    prob_original, prob_explanation
        ``(N,)`` softmax probability of the target on ``x`` and on ``e``.
    prob_reference
        ``(N,)`` softmax probability of the target on the reference ``r`` alone (everything removed; scored
        as ``e`` is, as 8-bit pixels where ``quantize`` applies): how much of the decision the reference
        keeps by itself (docs/DEFAULTS.md, "More levers tried").
    top1_original, top1_explanation, top1_reference
        ``(N,)`` the model's top-1 class on ``x``, on ``e`` and on the reference alone.
    lambda_
        ``(N,)`` sparsity weight in force at the returned mask.
    goal_met
        ``(N,)`` bool: the returned mask meets the game's goal (see :class:`FGVisConfig`).
    steps
        Optimisation steps run; ``cancelled``: stopped by ``should_stop`` before the end.
    history
        One :class:`StepState` per step (without previews).
    defended_activations
        Activation calls per forward pass under the gradient filter (0 with ``defense=False``).
    warnings
        What the user should know about how the run went (e.g. a batch split after running out of GPU
        memory).
    """

    mask: torch.Tensor = merged("item")
    explanation: torch.Tensor = merged("item")
    input: torch.Tensor = merged("item")
    reference: torch.Tensor = merged("item")
    target: torch.Tensor = merged("item")
    target_labels: list[str] = merged("item")
    prob_original: torch.Tensor = merged("item")
    prob_explanation: torch.Tensor = merged("item")
    prob_reference: torch.Tensor = merged("item")
    top1_original: torch.Tensor = merged("item")
    top1_explanation: torch.Tensor = merged("item")
    top1_reference: torch.Tensor = merged("item")
    lambda_: torch.Tensor = merged("item")
    goal_met: torch.Tensor = merged("item")
    game: Game = merged("same")
    defense: bool = merged("same")
    config: FGVisConfig = merged("same")
    steps: int = merged("max")
    cancelled: bool = merged("any")
    history: list[StepState] = merged("history")
    wall_time_s: float = merged("sum")
    device: str = merged("same")
    model_name: str = merged("same")
    defended_activations: int = merged("same")
    preprocessing: Preprocessing = merged("same")
    geometries: list[Geometry | None] = merged("item", default_factory=list)
    originals: list[np.ndarray | None] = merged("item", default_factory=list)
    warnings: list[str] = merged("join", default_factory=list)

    def __len__(self) -> int:
        return self.mask.shape[0]

    def evidence_map(self, index: int = 0) -> np.ndarray:
        """Evidence ``(H, W)`` float32 in [0, 1] at model resolution, averaged over colour channels:
        the mask ``m`` for preservation, ``1 - m`` for deletion (the pixels that had to go)."""
        mask = self.mask[index].mean(0)
        evidence = mask if self.game == "preserve" else 1.0 - mask
        return evidence.numpy().astype(np.float32)

    def evidence_image(
        self, index: int = 0, *, colormap: str = "inferno", original_resolution: bool = False
    ) -> np.ndarray:
        """The evidence map coloured on a fixed 0..1 scale: ``uint8`` RGB ``(H, W, 3)``; with
        ``original_resolution`` the size of the original photo (no evidence outside the model's crop)."""
        evidence = self.evidence_map(index)
        if original_resolution:
            evidence = paste_back(evidence, self._geometry(index), fill=0.0)
        return apply_colormap(evidence, colormap)

    def explanation_image(self, index: int = 0, *, original_resolution: bool = False) -> np.ndarray:
        """The explanation as a picture, ``uint8`` RGB ``(H, W, 3)``.

        At model resolution it is exactly ``e`` (feed it back to the model to test the explanation).
        With ``original_resolution`` the mask is upsampled onto the original photo,
        ``m*photo + (1-m)*r``, at the photo's size; outside the model's crop nothing was kept (preserve)
        or removed (delete).
        """
        if not original_resolution:
            return self.preprocessing.to_uint8(self.explanation[index])
        geometry = self._geometry(index)
        original = self.originals[index]
        assert original is not None  # _geometry refuses an item without its photo
        photo = original.astype(np.float32)
        outside = 0.0 if self.game == "preserve" else 1.0
        mask = paste_back(self.mask[index].permute(1, 2, 0).numpy(), geometry, fill=outside)
        reference_pixels = self.preprocessing.denormalize(self.reference[index : index + 1])[0]
        reference_hwc = reference_pixels.permute(1, 2, 0).numpy()
        reference = paste_back(reference_hwc, geometry, fill=reference_hwc.mean(axis=(0, 1)))
        pixels = mask * photo + (1.0 - mask) * reference
        return np.clip(np.round(pixels), 0, 255).astype(np.uint8)

    def _geometry(self, index: int) -> Geometry:
        geometry = self.geometries[index] if index < len(self.geometries) else None
        if geometry is None or self.originals[index] is None:
            raise ValueError("this explanation was computed from a tensor: there is no original photo to map onto")
        return geometry

    def summary(self, index: int = 0) -> dict:
        """JSON-ready facts about item ``index``."""
        return {
            "game": self.game,
            "defense": self.defense,
            "target": int(self.target[index]),
            "target_label": self.target_labels[index],
            "prob_original": float(self.prob_original[index]),
            "prob_explanation": float(self.prob_explanation[index]),
            "prob_reference": float(self.prob_reference[index]),
            "top1_original": int(self.top1_original[index]),
            "top1_explanation": int(self.top1_explanation[index]),
            "mask_mean": float(self.mask[index].mean()),
            "lambda": float(self.lambda_[index]),
            "lr": self.config.learning_rate(self.game),
            "goal_met": bool(self.goal_met[index]),
            "steps": self.steps,
            "cancelled": self.cancelled,
            "wall_time_s": self.wall_time_s,
            "device": self.device,
            "model": self.model_name,
            "defended_activations": self.defended_activations,
            "config": self.config.to_dict(),
        }
