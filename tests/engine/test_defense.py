"""The gradient filter (method notes Sec. 3): the rule itself and every way a nonlinearity can be applied."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.defense import ActivationFilter

from .toy_models import FunctionalNet, ReusedReLUNet, SignedNet


def _activation_capture(model, x):
    """Reference activations per call, via a TorchFunctionMode that only records (test oracle)."""
    recorder = ActivationFilter()
    with torch.no_grad(), recorder.recording():
        model(x)
    return recorder


def test_filter_rule_on_a_single_relu_matches_indicator_times_upstream_gradient():
    x = torch.tensor([[-1.0, 0.0, 0.5, 2.0, 3.0, -0.5]])
    e = torch.tensor([[-2.0, 0.3, 0.4, 2.5, 3.0, 1.0]], requires_grad=True)
    upstream = torch.tensor([[1.0, -2.0, 3.0, -4.0, 5.0, 6.0]])
    activation_filter = ActivationFilter()
    with torch.no_grad(), activation_filter.recording():
        h_x = torch.relu(x)
    with activation_filter.filtering():
        h_e = torch.relu(e)
    h_e.backward(upstream)
    # Bounds [min(0,h(x)), max(0,h(x))]; h(e) = [0, .3, .4, 2.5, 3, 1] -> inside: [y, n, y, n, y, n]
    inside = (h_e.detach() >= h_x.clamp(max=0)) & (h_e.detach() <= h_x.clamp(min=0))
    assert inside.tolist() == [[True, False, True, False, True, False]]
    relu_grad = (e.detach() > 0).float()
    assert torch.equal(e.grad, upstream * inside.float() * relu_grad)


def test_every_gradient_passes_when_the_explanation_equals_the_image():
    model = SignedNet().eval()
    x = torch.randn(2, 3, 8, 8)
    activation_filter = ActivationFilter()
    with torch.no_grad(), activation_filter.recording():
        model(x)
    e = x.clone().requires_grad_(True)
    with activation_filter.filtering():
        out = model(e)
    out[:, 1].sum().backward()
    filtered = e.grad.clone()
    e2 = x.clone().requires_grad_(True)
    model(e2)[:, 1].sum().backward()
    assert activation_filter.blocked_fraction().tolist() == [0.0, 0.0]
    assert torch.equal(filtered, e2.grad)


def test_reused_module_gets_bounds_per_call_not_per_module():
    model = ReusedReLUNet().eval()
    x = torch.randn(1, 3, 6, 6)
    recorder = _activation_capture(model, x)
    assert recorder.num_activations == 3
    with torch.no_grad():
        a = torch.relu(model.conv1(x))
        b = torch.relu(model.conv2(a))
        c = torch.relu(b + a)
    for bounds, reference in zip(recorder._bounds, (a, b, c), strict=True):
        assert torch.allclose(bounds.upper, reference, atol=1e-4)
        assert bounds.lower is None  # ReLU outputs cannot go below the lower bound 0


def test_functional_and_inplace_relus_are_covered_and_references_are_copies():
    model = FunctionalNet().eval()
    x = torch.randn(1, 3, 6, 6)
    recorder = _activation_capture(model, x)
    assert recorder.activation_names == ["relu", "relu", "relu_", "relu"]
    with torch.no_grad():
        a = F.relu(model.conv1(x))
        c = model.conv3(torch.relu(model.conv2(a))).relu()
        d = F.relu(c + a)
    # The in-place activation of `c + a` must not leak into the stored reference of `c`.
    assert torch.allclose(recorder._bounds[2].upper, c, atol=1e-4)
    assert torch.allclose(recorder._bounds[3].upper, d, atol=1e-4)


def test_inplace_relu_gradient_is_filtered_against_its_own_value():
    activation_filter = ActivationFilter()
    x = torch.tensor([[1.0, 1.0]])
    with torch.no_grad(), activation_filter.recording():
        x.clone().relu_()
    e = torch.tensor([[0.5, 2.0]], requires_grad=True)
    with activation_filter.filtering():
        out = F.relu(e * 1.0, inplace=True)
    out.sum().backward()
    assert e.grad.tolist() == [[1.0, 0.0]]


def test_signed_activations_use_sign_aware_bounds():
    activation_filter = ActivationFilter()
    x = torch.tensor([[-2.0, -2.0, -2.0, 1.0]])
    with torch.no_grad(), activation_filter.recording():
        h_x = F.leaky_relu(x, 0.1)  # [-0.2, -0.2, -0.2, 1]
    e = torch.tensor([[-1.0, -3.0, 1.0, 0.5]], requires_grad=True)
    with activation_filter.filtering():
        h_e = F.leaky_relu(e, 0.1)  # [-0.1, -0.3, 1.0, 0.5]
    h_e.sum().backward()
    # h(x) < 0: allowed h(x) <= h(e) <= 0 -> -0.1 yes, -0.3 no, 1.0 no; h(x)=1: 0.5 yes.
    assert torch.allclose(e.grad, torch.tensor([[0.1, 0.0, 0.0, 1.0]]))
    assert h_x.shape == h_e.shape


def test_relu6_and_gelu_modules_are_covered():
    model = SignedNet().eval()
    recorder = _activation_capture(model, torch.randn(1, 3, 6, 6))
    assert recorder.activation_names == ["leaky_relu", "gelu", "hardtanh"]


def test_mode_is_scoped_to_its_blocks():
    activation_filter = ActivationFilter()
    with torch.no_grad(), activation_filter.recording():
        torch.relu(torch.ones(2))
    torch.relu(torch.ones(3))  # outside any block: not seen
    assert activation_filter.num_activations == 1
    assert not torch.overrides._get_current_function_mode_stack()


def test_disabled_filter_records_and_blocks_nothing():
    activation_filter = ActivationFilter(enabled=False)
    with torch.no_grad(), activation_filter.recording():
        torch.relu(torch.ones(2))
    e = torch.full((2,), 5.0, requires_grad=True)
    with activation_filter.filtering():
        torch.relu(e).sum().backward()
    assert activation_filter.num_activations == 0
    assert e.grad.tolist() == [1.0, 1.0]


def test_filter_changes_no_forward_value():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)).eval()
    x = torch.randn(1, 3, 5, 5)
    model(x)
    activation_filter = ActivationFilter()
    with torch.no_grad(), activation_filter.recording():
        model(x)
    e = (x * 0.3).requires_grad_(True)
    with activation_filter.filtering():
        filtered = model(e)
    assert torch.equal(filtered, model(x * 0.3))


def test_blocked_units_are_counted_exactly_in_half_precision():
    from engine.defense import _count_per_item

    flags = torch.ones(2, 3000, dtype=torch.bfloat16)  # bf16 cannot hold 3000 exactly
    flags[1, :1000] = 0
    assert _count_per_item(flags).tolist() == [3000.0, 2000.0]
