"""The gradient filter (method notes Sec. 3): the rule itself and every way a nonlinearity can be applied."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.core.defense import ActivationFilter

from .toy_models import FunctionalNet, ReusedReLUNet, SignedNet


def _activation_capture(model, x, *, scoped=False):
    """Reference activations per call, via a TorchFunctionMode that only records (test oracle); with
    ``scoped``, recorded with the model (so that later passes may scope the mode to its modules)."""
    recorder = ActivationFilter()
    with torch.no_grad(), recorder.recording(model if scoped else None):
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
    from engine.core.defense import _count_per_item

    flags = torch.ones(2, 3000, dtype=torch.bfloat16)  # bf16 cannot hold 3000 exactly
    flags[1, :1000] = 0
    assert _count_per_item(flags).tolist() == [3000.0, 2000.0]


class _ClampNet(nn.Module):
    """Every activation the fused filter handles: ReLU / ReLU6 modules (in place and not), functional
    ``F.relu``, ``Tensor.relu_`` and ``F.hardtanh(x, 0, c)``, beside a GELU it does not."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.relu6 = nn.ReLU6()
        self.conv3 = nn.Conv2d(6, 6, 3, padding=1)
        self.gelu = nn.GELU()
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        a = self.relu(self.conv1(x) * 3)  # scaled so that some ReLU6 units saturate
        b = self.relu6(self.conv2(a) * 3)
        c = F.hardtanh(self.conv3(b), 0.0, 0.5) + F.relu(b) + self.conv3(a).relu_()
        return self.fc(self.gelu(c).mean((2, 3)))


def _filtered_pass(model, x, e, *, model_arg=None, generic=False, monkeypatch=None):
    """Record on ``x``, filter a pass on ``e``: -> (input gradient, blocked fraction, decisions)."""
    if generic:  # every activation through the general path: the reference for the fused one
        monkeypatch.setattr("engine.core.defense._clamp_ceiling", lambda *args: None)
    activation_filter = ActivationFilter()
    with torch.no_grad(), activation_filter.recording(model_arg):
        model(x)
    e = e.clone().requires_grad_(True)
    with activation_filter.filtering(model_arg):
        out = model(e)
    out[:, 1].sum().backward()
    if generic:
        monkeypatch.undo()
    return e.grad, activation_filter.blocked_fraction(), activation_filter.decisions(), activation_filter


def test_fused_clamp_filter_matches_the_general_filter(monkeypatch):
    torch.manual_seed(0)
    model = _ClampNet().eval()
    x = torch.randn(2, 3, 8, 8)
    e = x * 0.5 + 0.5 * torch.randn(2, 3, 8, 8)
    grad, blocked, decisions, fused_filter = _filtered_pass(model, x, e)
    assert [b.fused for b in fused_filter.recorded] == [True, True, True, True, True, False]
    grad_ref, blocked_ref, decisions_ref, _ = _filtered_pass(model, x, e, generic=True, monkeypatch=monkeypatch)
    assert float(blocked.min()) > 0 and float(blocked.max()) < 1
    assert torch.equal(grad, grad_ref)
    assert torch.equal(blocked, blocked_ref)
    assert all(torch.equal(a, b) for a, b in zip(decisions, decisions_ref, strict=True))


def test_fused_relu6_blocks_nothing_at_saturation_and_keeps_its_zero_derivative():
    activation_filter = ActivationFilter()
    x = torch.tensor([[7.0, 7.0, 2.0]])  # h(x) = 6, 6, 2
    with torch.no_grad(), activation_filter.recording():
        F.relu6(x)
    e = torch.tensor([[8.0, 5.0, 2.5]], requires_grad=True)  # h(e) = 6 (saturated), 5, 2.5 (> h(x))
    with activation_filter.filtering():
        F.relu6(e).sum().backward()
    assert e.grad.tolist() == [[0.0, 1.0, 0.0]]
    assert activation_filter.decisions()[0].tolist() == [[True, True, False]]
    assert activation_filter.blocked_fraction().tolist() == [1 / 3]


def test_scoped_filtering_matches_the_model_wide_mode_and_restores_the_modules():
    torch.manual_seed(1)
    model = SignedNet().eval()
    x = torch.randn(2, 3, 6, 6)
    e = x * 0.3 + 0.7 * torch.randn(2, 3, 6, 6)
    grad, blocked, _, scoped_filter = _filtered_pass(model, x, e, model_arg=model)
    assert scoped_filter.scoped
    grad_ref, blocked_ref, _, _ = _filtered_pass(model, x, e)
    assert torch.equal(grad, grad_ref) and torch.equal(blocked, blocked_ref)
    assert not any("forward" in vars(module) for module in model.modules())


def test_scoped_filtering_is_active_only_inside_activation_modules():
    model = SignedNet().eval()
    x = torch.randn(1, 3, 6, 6)
    activation_filter = _activation_capture(model, x, scoped=True)
    modes_seen = []
    handle = model.conv2.register_forward_hook(
        lambda *args: modes_seen.append(len(torch.overrides._get_current_function_mode_stack()))
    )
    with activation_filter.filtering(model):
        model(x.clone().requires_grad_(True))
    handle.remove()
    assert modes_seen == [0]


def test_models_with_functional_activations_keep_the_model_wide_mode():
    model = FunctionalNet().eval()
    x = torch.randn(1, 3, 6, 6)
    grad, _, _, activation_filter = _filtered_pass(model, x, x * 0.5, model_arg=model)
    assert not activation_filter.scoped
    grad_ref, _, _, _ = _filtered_pass(model, x, x * 0.5)
    assert torch.equal(grad, grad_ref)


def test_wrapped_modules_are_restored_after_an_error():
    model = SignedNet().eval()
    activation_filter = _activation_capture(model, torch.randn(1, 3, 6, 6), scoped=True)
    with pytest.raises(KeyboardInterrupt), activation_filter.filtering(model):
        model(torch.randn(1, 3, 6, 6))
        raise KeyboardInterrupt
    assert not any("forward" in vars(module) for module in model.modules())


def test_another_thread_using_the_model_during_a_filtered_pass_is_not_filtered():
    model = SignedNet().eval()
    x = torch.randn(1, 3, 6, 6)
    activation_filter = _activation_capture(model, x, scoped=True)

    def use_the_model_elsewhere(*args):
        worker = threading.Thread(target=lambda: model.act1(torch.randn(1, 4, 6, 6)))
        worker.start()
        worker.join()

    handle = model.conv2.register_forward_hook(use_the_model_elsewhere)
    with activation_filter.filtering(model):  # would raise DefenseError if the other call were counted
        model(x.clone().requires_grad_(True))
    handle.remove()
    assert activation_filter.blocked_fraction().tolist() == [0.0]


def test_uncounted_passes_filter_the_same_and_report_nan():
    model = _ClampNet().eval()
    x = torch.randn(1, 3, 8, 8)
    e = x * 0.5
    counted_filter = ActivationFilter()
    with torch.no_grad(), counted_filter.recording(model):
        model(x)
    grads = []
    for count in (True, False):
        inputs = e.clone().requires_grad_(True)
        with counted_filter.filtering(model, count=count):
            model(inputs)[:, 0].sum().backward()
        grads.append(inputs.grad)
    assert torch.equal(grads[0], grads[1])
    assert torch.isnan(counted_filter.blocked_fraction()).all()
    assert len(counted_filter.decisions()) == counted_filter.num_activations


def test_eager_passes_reuse_the_buffers_a_replayed_graph_writes():
    """A CUDA graph recorded from a counted pass rewrites that pass's buffers; eager passes in between
    (the graph trial, engine.core.model_pass) must keep writing the same ones, and after a replay the
    filter reports the recorded pass again."""
    model = _ClampNet().eval()
    x = torch.randn(2, 3, 8, 8)
    activation_filter = ActivationFilter()
    with torch.no_grad(), activation_filter.recording(model):
        model(x)

    def filtered_pass(e, count):
        with activation_filter.filtering(model, count=count):
            model(e.clone().requires_grad_(True))[:, 0].sum().backward()

    filtered_pass(x * 1.5, count=True)
    recorded = activation_filter.last_pass()
    counted = activation_filter.blocked_fraction()
    assert float(counted.min()) > 0
    filtered_pass(x * 0.5, count=False)
    decided, _, _ = activation_filter.last_pass()
    assert [t.data_ptr() for t, _ in decided] == [t.data_ptr() for t, _ in recorded[0]]
    assert torch.isnan(activation_filter.blocked_fraction()).all()
    activation_filter.replayed(recorded)
    assert torch.equal(activation_filter.blocked_fraction(), counted)


@pytest.mark.parametrize("name", ["mobilenet_v2", "googlenet", "efficientnet_b0"])
def test_fast_paths_match_the_general_filter_on_torchvision_architectures(name, monkeypatch):
    """ReLU6 modules (fused, scoped), functional ReLUs (fused, model-wide mode) and SiLU/sigmoid modules
    (general path, scoped): the same gradients and counts as the general filter with the model-wide mode."""
    import torchvision

    torch.manual_seed(0)
    options = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    model = getattr(torchvision.models, name)(weights=None, **options).eval()
    x = torch.randn(2, 3, 64, 64)
    e = x * 0.5 + 0.3 * torch.randn(2, 3, 64, 64)
    grad, blocked, _, fast = _filtered_pass(model, x, e, model_arg=model)
    grad_ref, blocked_ref, _, _ = _filtered_pass(model, x, e, generic=True, monkeypatch=monkeypatch)
    assert fast.scoped == (name != "googlenet")
    assert any(b.fused for b in fast.recorded) == (name != "efficientnet_b0")
    assert float(blocked.min()) > 0
    assert torch.equal(grad, grad_ref) and torch.equal(blocked, blocked_ref)


class _LayoutSwitchingNet(_ClampNet):
    """:class:`_ClampNet` whose activations are channels-last when a gradient is being recorded and
    contiguous otherwise, as oneDNN's convolutions gave them on EfficientNet-Lite0 (CPU)."""

    def forward(self, x):
        if torch.is_grad_enabled():
            x = x.contiguous(memory_format=torch.channels_last)
        return super().forward(x)


@pytest.mark.parametrize("generic", [False, True])
def test_a_filtered_pass_in_another_memory_layout_filters_the_same_in_that_layout(generic, monkeypatch):
    """Bounds recorded on contiguous activations, a filtered pass on channels-last ones: the same gradient,
    counts and decisions as one layout throughout, and the filter's buffers in the activations' layout
    (mixed layouts made each elementwise kernel ~3x slower)."""
    torch.manual_seed(3)
    plain = _ClampNet().eval()
    switching = _LayoutSwitchingNet().eval()
    switching.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 8, 8)
    e = x * 0.5 + 0.5 * torch.randn(2, 3, 8, 8)
    grad, blocked, decisions, layout_filter = _filtered_pass(switching, x, e, generic=generic, monkeypatch=monkeypatch)
    grad_ref, blocked_ref, decisions_ref, _ = _filtered_pass(plain, x, e, generic=generic, monkeypatch=monkeypatch)
    assert float(blocked.min()) > 0
    assert torch.allclose(grad, grad_ref, atol=1e-6) and torch.equal(blocked, blocked_ref)
    assert all(torch.equal(a, b) for a, b in zip(decisions, decisions_ref, strict=True))
    kept = [tensor for tensor, _ in layout_filter.last_pass()[0] if tensor.dim() == 4]
    assert kept and all(t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous() for t in kept)
