"""Explanation methods behind one call shape, so that metrics treat them alike.

:func:`attribute` returns an :class:`Attribution`: an evidence map ``(N, H, W)`` per item (non-negative,
scaled so that each item's maximum is 1; higher = more evidence for the target) and, for FGVis and
Meaningful Perturbation, the mask they optimised.

* ``fgvis`` / ``fgvis_nodefense``: FGVis deletion game (:func:`engine.explain`), evidence ``1 - mean_c(m)``.
* ``fgvis_preserve``: FGVis preservation game with the defense, evidence ``mean_c(m)``.
* ``gradient`` (Simonyan et al. 2014), ``gradient_x_input``, ``integrated_gradients`` (Sundararajan et
  al. 2017), ``smoothgrad`` (Smilkov et al. 2017), ``guided_backprop`` (Springenberg et al. 2015) and
  ``gradcam`` (Selvaraju et al. 2017) via Captum.
* ``meaningful_perturbation`` (Fong & Vedaldi 2017): a low-resolution, smooth deletion mask towards a
  blurred reference, with area (L1) and total-variation terms.

Signed attributions (gradient x input, integrated gradients) keep their positive part -- evidence *for*
the target; gradient maps use ``max_c |.|``. Ties are broken in no particular order by the metrics.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.core.explanation import Explanation, FGVisConfig, Game
from engine.core.fgvis import explain
from engine.core.reference import gaussian_blur
from engine.errors import ConfigError
from engine.models.loading import ClassifierModel, frozen

#: Meaningful Perturbation's blur (sigma in pixels), as Fong & Vedaldi use it; the quality benchmark
#: removes pixels to this blur and gives FGVis the same (:data:`engine.evaluation.suite.BLUR_SIGMA`).
BLUR_SIGMA = 10.0
METHODS = (
    "fgvis", "fgvis_nodefense", "fgvis_preserve", "gradient", "gradient_x_input", "integrated_gradients", "smoothgrad",
    "guided_backprop", "gradcam", "meaningful_perturbation",
)  # fmt: skip


@dataclass
class Attribution:
    """``evidence`` ``(N, H, W)`` float32 in [0, 1] on the CPU (each item's max is 1 unless all zero);
    ``mask`` ``(N, C, H, W)`` in [0, 1] for the mask methods (1 = pixel kept), else ``None``;
    ``explanation`` the whole FGVis result (``e``, its scores, ``goal_met``) for the FGVis methods."""

    method: str
    evidence: torch.Tensor
    mask: torch.Tensor | None = None
    seconds: float = 0.0
    explanation: Explanation | None = None


def attribute(
    method: str,
    model: ClassifierModel | nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    *,
    config: FGVisConfig | None = None,
    layer: str | None = None,
    mp_steps: int = 300,
) -> Attribution:
    """Evidence of ``method`` for ``targets`` ``(N,)`` on ``x`` ``(N, C, H, W)`` (model input space).

    ``config``: FGVis settings (default :class:`FGVisConfig`); ``layer``: Grad-CAM's layer by module name
    (default: the last module with a spatial ``(N, C, h, w)`` output, h, w > 1); ``mp_steps``: iterations
    of Meaningful Perturbation. Parameters, training flags and hooks of the model are restored."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    module = model.module if isinstance(model, ClassifierModel) else model
    device = next(module.parameters()).device
    x = x.detach().to(device)
    targets = targets.to(device)
    started = time.perf_counter()
    mask = result = None
    if method.startswith("fgvis"):
        config = config or FGVisConfig()
        game: Game = "preserve" if method == "fgvis_preserve" else "delete"
        # The ClassifierModel (when given) carries the preprocessing that turns e back into pixels.
        result = explain(model, x, targets, game=game, defense=method != "fgvis_nodefense", config=config)
        mask = result.mask
        evidence = mask.mean(1) if game == "preserve" else 1.0 - mask.mean(1)
    elif method == "meaningful_perturbation":
        with frozen(module):
            mask = meaningful_perturbation(module, x, targets, steps=mp_steps)
        evidence = 1.0 - mask.mean(1)
    else:
        with frozen(module), _plain_activations(module):
            evidence = _captum(method, module, x, targets, layer)
    evidence = _normalise(evidence.detach().float().cpu())
    return Attribution(
        method, evidence, None if mask is None else mask.detach().cpu(), time.perf_counter() - started, result
    )


def _captum(method: str, module: nn.Module, x: torch.Tensor, targets: torch.Tensor, layer: str | None):
    from captum import attr

    inputs = x.clone().requires_grad_(True)
    if method == "gradient":
        return attr.Saliency(module).attribute(inputs, target=targets, abs=True).amax(1)
    if method == "gradient_x_input":
        return attr.InputXGradient(module).attribute(inputs, target=targets).sum(1).clamp(min=0)
    if method == "integrated_gradients":
        ig = attr.IntegratedGradients(module)
        result = ig.attribute(inputs, target=targets, n_steps=32, internal_batch_size=32)
        return result.sum(1).clamp(min=0)
    if method == "smoothgrad":
        spread = float(x.max() - x.min())
        tunnel = attr.NoiseTunnel(attr.Saliency(module))
        result = tunnel.attribute(
            inputs,
            nt_type="smoothgrad",
            nt_samples=16,
            nt_samples_batch_size=16,
            stdevs=0.15 * spread,
            target=targets,
            abs=True,
        )
        return result.amax(1)
    if method == "guided_backprop":
        with warnings.catch_warnings():  # Captum announces the (temporary) ReLU hooks it sets
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            return attr.GuidedBackprop(module).attribute(inputs, target=targets).abs().amax(1)
    target_layer = find_gradcam_layer(module, x[:1]) if layer is None else dict(module.named_modules())[layer]
    cam = attr.LayerGradCam(module, target_layer).attribute(inputs, target=targets, relu_attributions=True)
    return F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]


def find_gradcam_layer(module: nn.Module, x: torch.Tensor) -> nn.Module:
    """The last module (in execution order, containers excluded) whose output is ``(N, C, h, w)`` with
    ``h, w > 1``: the deepest spatial feature map, Grad-CAM's usual choice."""
    order: list[nn.Module] = []
    hooks = []

    def remember(sub, _inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() == 4 and min(output.shape[2:]) > 1:
            order.append(sub)

    for sub in module.modules():
        if not list(sub.children()):
            hooks.append(sub.register_forward_hook(remember))
    try:
        with torch.no_grad():
            module(x)
    finally:
        for hook in hooks:
            hook.remove()
    if not order:
        raise ConfigError("Grad-CAM needs a convolutional layer with a spatial output; none was found")
    return order[-1]


class _ClampedReLU(nn.ReLU):
    """``ReLU6`` as an ``nn.ReLU`` followed by a clamp at 6 (identical values), so that Captum's guided
    backprop, which hooks ``nn.ReLU`` modules only, treats it as a ReLU."""

    def __init__(self, upper: float) -> None:
        super().__init__(inplace=False)
        self.upper = upper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).clamp(max=self.upper)


@contextlib.contextmanager
def _plain_activations(module: nn.Module) -> Iterator[None]:
    """Within the block: ``ReLU6`` modules are :class:`_ClampedReLU`, and no ReLU is in-place (Captum's
    module backward hooks cannot handle in-place outputs). Restored afterwards."""
    swapped, inplace = [], []
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, _ClampedReLU(6.0))
                swapped.append((parent, name, child))
            elif isinstance(child, nn.ReLU) and child.inplace:
                child.inplace = False
                inplace.append(child)
    try:
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
        for child in inplace:
            child.inplace = True


def meaningful_perturbation(
    module: nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    *,
    steps: int = 300,
    lr: float = 0.1,
    l1: float = 0.01,
    tv: float = 0.2,
    tv_beta: float = 3.0,
    scale: int = 8,
    blur_sigma: float = BLUR_SIGMA,
) -> torch.Tensor:
    """Fong & Vedaldi (2017) deletion mask ``(N, 1, H, W)`` in [0, 1] (1 = keep): a mask at 1/``scale``
    resolution, upsampled bilinearly, minimising ``p_target(m*x + (1-m)*blur(x)) + l1*mean|1-m| +
    tv*mean(|grad m|^tv_beta)`` with Adam, starting from ``m = 1``."""
    height, width = x.shape[2:]
    small = torch.ones(x.shape[0], 1, max(1, height // scale), max(1, width // scale), device=x.device)
    small.requires_grad_(True)
    reference = gaussian_blur(x, blur_sigma)
    optimiser = torch.optim.Adam([small], lr=lr)
    for _ in range(steps):
        mask = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
        probs = torch.softmax(module(mask * x + (1 - mask) * reference), 1).gather(1, targets[:, None])[:, 0]
        variation = (small[:, :, 1:, :] - small[:, :, :-1, :]).abs().pow(tv_beta).mean((1, 2, 3)) + (
            small[:, :, :, 1:] - small[:, :, :, :-1]
        ).abs().pow(tv_beta).mean((1, 2, 3))
        loss = probs + l1 * (1 - small).abs().mean((1, 2, 3)) + tv * variation
        optimiser.zero_grad()
        loss.sum().backward()
        optimiser.step()
        with torch.no_grad():
            small.clamp_(0, 1)
    with torch.no_grad():  # interpolation can round a hair outside [0, 1]
        return F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False).clamp_(0, 1)


def _normalise(evidence: torch.Tensor) -> torch.Tensor:
    evidence = evidence.clamp(min=0)
    peak = evidence.flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1)
    return evidence / peak
