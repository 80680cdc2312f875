"""Every explanation method on a toy model: call shape, value range, and the model left as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from engine import FGVisConfig
from engine.evaluation.baselines import METHODS, attribute, find_gradcam_layer


class ToyNet(nn.Module):
    """ReLU6 (swapped for guided backprop), an in-place ReLU (made out-of-place for Captum) and a
    spatial feature map for Grad-CAM."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.act1 = nn.ReLU6()
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, stride=2)
        self.act2 = nn.ReLU(inplace=True)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        return self.head(self.act2(self.conv2(self.act1(self.conv1(x)))).mean((2, 3)))


def _state(model: nn.Module):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [type(m).__name__ for m in model.modules()],
        [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
        [getattr(m, "inplace", None) for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [m.training for m in model.modules()],
    )


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_a_normalised_map_and_restores_the_model(method):
    torch.manual_seed(0)
    model = ToyNet().eval()
    x = torch.randn(2, 3, 12, 12)
    targets = torch.tensor([1, 3])
    before = _state(model)
    result = attribute(method, model, x, targets, config=FGVisConfig(steps=6, patience=0), mp_steps=4)
    assert result.method == method and result.evidence.shape == (2, 12, 12)
    assert torch.isfinite(result.evidence).all() and result.evidence.min() >= 0 and result.evidence.max() <= 1
    assert result.seconds > 0
    if method in ("fgvis", "fgvis_nodefense", "fgvis_preserve", "meaningful_perturbation"):
        assert result.mask is not None and result.mask.min() >= 0 and result.mask.max() <= 1
    else:
        assert result.mask is None
    assert (result.explanation is not None) == method.startswith("fgvis")
    if method == "fgvis_preserve":  # the kept pixels are the evidence
        assert result.explanation.game == "preserve"
        kept = result.mask.mean(1)
        assert torch.allclose(result.evidence, kept / kept.flatten(1).amax(1)[:, None, None])
    after = _state(model)
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert before[1:] == after[1:]
    assert not torch.overrides._get_current_function_mode_stack()


def test_gradient_map_is_the_input_gradient():
    torch.manual_seed(0)
    model = ToyNet().eval()
    x = torch.randn(1, 3, 12, 12)
    inputs = x.clone().requires_grad_(True)
    model(inputs)[0, 2].backward()
    expected = inputs.grad.abs().amax(1)
    result = attribute("gradient", model, x, torch.tensor([2]))
    assert torch.allclose(result.evidence, expected / expected.max(), atol=1e-6)


def test_gradcam_layer_is_the_last_spatial_feature_map():
    model = ToyNet().eval()
    assert find_gradcam_layer(model, torch.randn(1, 3, 12, 12)) is model.act2


def test_unknown_method_is_a_clear_error():
    from engine import ConfigError

    with pytest.raises(ConfigError, match="unknown method"):
        attribute("lime", ToyNet(), torch.randn(1, 3, 8, 8), torch.tensor([0]))
