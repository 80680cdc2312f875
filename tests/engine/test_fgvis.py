"""The optimisation loop on tiny models: contract of explain(), cancellation, batching, hygiene."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import engine
from engine import ConfigError, DefenseError, Explanation, FGVisConfig, TargetError, explain
from engine.core.reference import gaussian_blur

from .toy_models import FunctionalNet, ReusedReLUNet, SignedNet, TinyCNN

FAST = FGVisConfig(steps=12, patience=0)


@pytest.fixture
def tiny():
    return TinyCNN().eval()


@pytest.fixture
def inputs():
    return torch.randn(3, 3, 16, 16)


def _snapshot(model: nn.Module):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
        [getattr(m, "inplace", None) for m in model.modules()],
    )


def _assert_restored(model, before, inputs, inputs_before):
    after = _snapshot(model)
    assert all(torch.equal(before[0][k], after[0][k]) for k in before[0])
    assert before[1:] == after[1:]
    assert torch.equal(inputs, inputs_before)
    assert not torch.overrides._get_current_function_mode_stack()


def test_result_contract_shapes_ranges_and_devices(tiny, inputs):
    result = explain(tiny, inputs, config=FAST)
    assert isinstance(result, Explanation) and len(result) == 3
    assert result.mask.shape == inputs.shape and result.mask.device.type == "cpu"
    assert result.mask.min() >= 0 and result.mask.max() <= 1
    assert result.explanation.shape == inputs.shape
    assert torch.allclose(result.explanation, result.mask * inputs + (1 - result.mask) * result.reference)
    assert result.prob_original.shape == result.prob_explanation.shape == (3,)
    assert torch.equal(result.target, tiny(inputs).argmax(1))  # default target: top-1
    assert result.steps == 12 == len(result.history) and not result.cancelled
    assert result.defended_activations == 2 and result.defense
    assert result.wall_time_s > 0 and result.config == FAST
    first = result.history[0]
    assert first.step == 1 and first.target_prob.shape == (3,) and first.preview is None
    assert np.allclose(first.target_prob, result.prob_original.numpy(), atol=1e-5)  # step 1: e == x
    assert np.all(first.blocked_fraction == 0)


def test_on_step_receives_every_step_with_a_small_preview(tiny):
    states = []
    config = FGVisConfig(steps=5, patience=0, preview_size=8, preview_rate_hz=1e9)
    explain(tiny, torch.randn(2, 3, 40, 30), config=config, on_step=states.append)
    assert [s.step for s in states] == [1, 2, 3, 4, 5] and all(s.total == 5 for s in states)
    preview = states[-1].preview
    assert preview.shape == (2, 8, 6) and preview.dtype == np.float32
    assert preview.min() >= 0 and preview.max() <= 1


def test_previews_are_throttled_to_the_configured_rate(tiny, inputs):
    states = []
    result = explain(tiny, inputs, config=FGVisConfig(steps=6, patience=0, preview_rate_hz=1e-3), on_step=states.append)
    assert [s.preview is not None for s in states] == [True, False, False, False, False, False]
    assert all(s.preview is None for s in result.history)


def test_a_batch_that_runs_out_of_cuda_memory_is_split_and_says_so(tiny):
    class FitsTwo(nn.Module):
        """Raises the exception CUDA raises when more than two images go through at once."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            if x.shape[0] > 2:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return self.inner(x)

    images = torch.randn(5, 3, 16, 16)
    targets = [1, 2, 3, 4, 5]
    split = explain(FitsTwo(tiny), images, targets, config=FAST)
    assert len(split) == 5 and split.target.tolist() == targets
    assert split.warnings and "out of memory on a batch of 5" in split.warnings[0]
    memory = [warning for warning in split.warnings if "out of memory" in warning]
    assert "2 + 3" in split.warnings[0] and len(memory) == 2  # the 3 were split again (1 + 2)
    # Notes on single items number them in the whole batch, not in the part they ran in.
    notes = {warning.split(":")[0] for warning in split.warnings if warning.startswith("item ")}
    soft = {i for i in range(1, 6) if not ((split.mask[i - 1] == 0) | (split.mask[i - 1] == 1)).all()}
    assert notes == {f"item {i}" for i in range(1, 6) if int(split.top1_original[i - 1]) != targets[i - 1]} | {
        f"item {i}" for i in range(1, 6) if not bool(split.goal_met[i - 1]) or i in soft
    }
    assert len(split.history) == split.steps and split.history[0].target_prob.shape == (5,)
    for low, high in ((0, 2), (2, 3), (3, 5)):  # each part equals running it on its own
        alone = explain(tiny, images[low:high], targets[low:high], config=FAST)
        assert torch.allclose(split.mask[low:high], alone.mask)
        assert torch.allclose(split.prob_explanation[low:high], alone.prob_explanation)
        assert not any("out of memory" in warning for warning in alone.warnings)


def test_a_single_image_that_does_not_fit_is_a_clear_device_error(tiny):
    class NeverFits(nn.Module):
        def forward(self, x):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(engine.DeviceError, match="even on its own"):
        explain(NeverFits(), torch.randn(1, 3, 16, 16), 0, config=FAST)


def test_reference_cache_reuses_the_reference_pass_with_identical_results(tiny, inputs):
    cache = engine.ReferenceCache(size=2)
    config = FGVisConfig(steps=8, patience=0, reference="blur")
    first = explain(tiny, inputs, config=config, cache=cache)
    assert cache.hits == 0
    again = explain(tiny, inputs, game="delete", config=config, cache=cache)
    assert cache.hits == 3  # bounds + logits, the reference image and its logits
    fresh = explain(tiny, inputs, game="delete", config=config)
    assert torch.equal(again.mask, fresh.mask) and torch.equal(again.reference, fresh.reference)
    assert torch.equal(again.prob_reference, fresh.prob_reference)
    assert torch.equal(again.top1_reference, fresh.top1_reference)
    assert np.all(again.history[0].blocked_fraction == 0)  # the restored bounds match the image
    assert torch.equal(first.reference, fresh.reference)
    other = explain(tiny, inputs + 0.5, config=config, cache=cache)
    assert cache.hits == 3  # another image: computed, not served from the cache
    assert not torch.equal(other.reference, first.reference)
    first.reference.add_(1.0)  # results never share memory with the cache
    assert torch.equal(explain(tiny, inputs, config=config, cache=cache).reference, fresh.reference)


def test_reference_cache_serves_one_image_with_several_targets(tiny, inputs):
    cache = engine.ReferenceCache(size=2)
    config = FGVisConfig(steps=8, patience=0, reference="blur")
    image = inputs[:1]
    explain(tiny, image, [1, 2], config=config, cache=cache)
    assert cache.hits == 0
    again = explain(tiny, image, [1, 2], config=config, cache=cache)
    assert cache.hits == 4  # the image's pass, the pass on its two copies, the reference image and its logits
    fresh = explain(tiny, image, [1, 2], config=config)
    assert torch.equal(again.mask, fresh.mask) and torch.equal(again.prob_original, fresh.prob_original)
    assert torch.equal(again.prob_reference, fresh.prob_reference)
    explain(tiny, image, [1, 2, 3], config=config, cache=cache)
    assert cache.hits == 5  # three copies: only the image's own pass is reused


def test_cancel_returns_partial_result_marked_cancelled(tiny, inputs):
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 4

    result = explain(tiny, inputs, config=FAST, should_stop=should_stop)
    assert result.cancelled and result.steps == 4 and len(result.history) == 4
    assert result.mask.shape == inputs.shape and torch.isfinite(result.prob_explanation).all()


@pytest.mark.parametrize("model_class", [TinyCNN, ReusedReLUNet, FunctionalNet, SignedNet])
def test_model_and_input_restored_after_normal_and_cancelled_runs(model_class, inputs):
    model = model_class()
    model.train()  # explain must run in eval mode and then give the caller's mode back
    next(model.parameters()).requires_grad_(False)
    before, inputs_before = _snapshot(model), inputs.clone()
    explain(model, inputs, config=FAST)
    _assert_restored(model, before, inputs, inputs_before)
    explain(model, inputs, config=FAST, should_stop=lambda: True)
    _assert_restored(model, before, inputs, inputs_before)


class _FailsOnThirdCall(TinyCNN):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("boom")
        return super().forward(x)


def test_model_restored_when_the_run_raises(inputs):
    model = _FailsOnThirdCall().train()
    before, inputs_before = _snapshot(model), inputs.clone()
    with pytest.raises(RuntimeError, match="boom"):
        explain(model, inputs, config=FAST)
    _assert_restored(model, before, inputs, inputs_before)


def test_batch_is_one_batched_run_not_a_loop(tiny, inputs):
    batches = []
    tiny.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    explain(tiny, inputs, config=FGVisConfig(steps=FAST.steps, patience=0, binarize=False))
    # the reference pass (which also checks the input) + one forward per step + the final check + the
    # score of the reference alone, each with the whole batch (binarize's passes, also whole batches, are
    # tested on their own)
    assert batches == [3] * (FAST.steps + 3)


def test_batched_items_match_items_explained_alone(tiny, inputs):
    together = explain(tiny, inputs, config=FAST)
    alone = explain(tiny, inputs[1:2], config=FAST)
    assert torch.allclose(together.mask[1], alone.mask[0], atol=1e-4)


def test_several_targets_for_one_image_explain_each(tiny, inputs):
    result = explain(tiny, inputs[:1], [2, 5, "class 7"], config=FAST)
    assert result.target.tolist() == [2, 5, 7] and len(result) == 3
    assert torch.equal(result.input[0], result.input[2])
    assert result.target_labels == ["class 2", "class 5", "class 7"]


def test_deterministic_for_a_seed(tiny, inputs):
    first = explain(tiny, inputs, config=FAST)
    second = explain(tiny, inputs, config=FAST)
    assert torch.equal(first.mask, second.mask)


def test_defense_off_runs_the_same_loop_unfiltered(tiny, inputs):
    result = explain(tiny, inputs, defense=False, config=FAST)
    assert result.defended_activations == 0 and not result.defense
    assert all(np.all(s.blocked_fraction == 0) for s in result.history)


def test_defense_blocks_units_that_exceed_their_reference(tiny, inputs):
    result = explain(tiny, inputs, config=FGVisConfig(steps=30, patience=0, monitor_every=1))
    assert max(float(s.blocked_fraction.max()) for s in result.history[1:]) > 0


def test_monitor_counts_every_nth_step_without_changing_the_run(tiny, inputs):
    every_step = explain(tiny, inputs, config=FGVisConfig(steps=30, patience=0, monitor_every=1))
    sampled = explain(tiny, inputs, config=FGVisConfig(steps=30, patience=0, monitor_every=10))
    assert torch.equal(every_step.mask, sampled.mask)
    counted = [s.step for s in sampled.history if np.all(np.isfinite(s.blocked_fraction))]
    assert counted == [1, 10, 20, 30]
    assert all(np.all(np.isnan(s.blocked_fraction)) for s in sampled.history if s.step not in counted)
    for step in counted:
        assert np.array_equal(sampled.history[step - 1].blocked_fraction, every_step.history[step - 1].blocked_fraction)
    json.dumps([s.to_dict() for s in sampled.history], allow_nan=False)  # uncounted steps are null, not NaN


def test_games_move_the_mask_in_opposite_directions(tiny, inputs):
    config = FGVisConfig(steps=20, patience=0, lambda_=1.0)
    preserve = explain(tiny, inputs, game="preserve", config=config)
    delete = explain(tiny, inputs, game="delete", config=config)
    assert preserve.mask.mean() < 0.9 and delete.mask.mean() > 0.99  # lambda pushes towards 0 / 1
    assert np.allclose(delete.evidence_map(0), 1 - delete.mask[0].mean(0).numpy())
    assert np.allclose(preserve.evidence_map(0), preserve.mask[0].mean(0).numpy())


@pytest.mark.parametrize("optimizer", ["adam", "normalized", "sgd"])
def test_every_optimizer_keeps_the_mask_in_range_and_moves_it(tiny, inputs, optimizer):
    result = explain(tiny, inputs, config=FGVisConfig(steps=10, patience=0, optimizer=optimizer, lr=0.05))
    assert result.mask.min() >= 0 and result.mask.max() <= 1
    assert result.history[-1].mask_mean.max() < 1.0
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        FGVisConfig(optimizer="lbfgs")


def test_unmet_goal_returns_the_mask_that_came_closest(tiny, inputs):
    """A deletion goal no step can meet: the result is the mask with the lowest probability seen."""
    result = explain(tiny, inputs, game="delete", config=FGVisConfig(steps=15, patience=0, delete_ratio=1e-9))
    assert not result.goal_met.any()
    lowest = np.min(np.stack([s.target_prob for s in result.history]), axis=0)
    assert np.allclose(result.prob_explanation.numpy(), lowest, atol=1e-6)


def test_references(tiny, inputs):
    zero = explain(tiny, inputs, config=FGVisConfig(steps=1, reference="zero"))
    black = explain(tiny, inputs, config=FGVisConfig(steps=1, reference="black"))
    blur = explain(tiny, inputs, config=FGVisConfig(steps=1, reference="blur", blur_sigma=2.0))
    assert torch.equal(zero.reference, torch.zeros_like(inputs))
    assert torch.equal(black.reference, torch.zeros_like(inputs))  # bare module: input = pixels / 255
    assert torch.allclose(blur.reference, gaussian_blur(inputs, 2.0))
    assert blur.reference.std() < inputs.std()


def test_gaussian_blur_keeps_constants_and_mass():
    flat = torch.full((1, 3, 9, 9), 0.7)
    assert torch.allclose(gaussian_blur(flat, 3.0), flat)
    spike = torch.zeros(1, 1, 31, 31)
    spike[0, 0, 15, 15] = 1
    assert abs(gaussian_blur(spike, 2.0).sum().item() - 1) < 1e-5


def test_bad_arguments_raise_the_engines_errors(tiny, inputs, tmp_path):
    with pytest.raises(TargetError, match="out of range"):
        explain(tiny, inputs, 10, config=FAST)
    with pytest.raises(TargetError, match="2 targets were given for 3 images"):
        explain(tiny, inputs, [1, 2], config=FAST)
    with pytest.raises(ConfigError, match="game must be one of"):
        explain(tiny, inputs, game="hide")
    with pytest.raises(ConfigError, match=r"bare nn.Module needs an already preprocessed tensor"):
        explain(tiny, tmp_path / "photo.jpg")
    with pytest.raises(ConfigError, match="steps must be at least 1"):
        FGVisConfig(steps=0)
    with pytest.raises(ConfigError, match="NaN"):
        explain(tiny, torch.full((1, 3, 8, 8), float("nan")))


def test_torchscript_model_cannot_be_defended_but_runs_without(tiny, inputs):
    scripted = torch.jit.script(tiny)
    with pytest.raises(DefenseError, match="defense=False"):
        explain(scripted, inputs, config=FAST)
    assert explain(scripted, inputs, defense=False, config=FAST).steps == FAST.steps


def test_unavailable_cuda_is_a_clear_error(tiny, inputs):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(engine.DeviceError, match="no CUDA GPU"):
        explain(tiny, inputs, config=FGVisConfig(steps=1, device="cuda"))


def test_every_result_field_says_how_split_parts_merge():
    """merge_explanations is driven by the fields' merge rules: a field added without one cannot be
    merged (it would otherwise silently come from the first part only)."""
    from dataclasses import field, fields, make_dataclass

    from engine.core.explanation import MERGE_RULES, StepState, merge_rule

    for cls in (Explanation, StepState):
        assert all(merge_rule(spec) in MERGE_RULES for spec in fields(cls))
    extended = make_dataclass("Extended", [("new_per_item", list, field(default_factory=list))], bases=(Explanation,))
    with pytest.raises(TypeError, match="'new_per_item' has no merge rule"):
        [merge_rule(spec) for spec in fields(extended)]


def test_reported_scores_are_those_of_the_returned_explanation_and_reference(tiny, inputs):
    """Binarisation's own score of a 0/1 mask stands in for a final pass, and the reference's score may
    come from the cache: both must equal a fresh pass on what the result holds."""
    cache = engine.ReferenceCache(size=2)
    config = FGVisConfig(steps=12, patience=0, reference="blur")
    binarised = 0
    for game in ("preserve", "delete", "preserve"):
        result = explain(tiny, inputs, game=game, config=config, cache=cache)
        with torch.no_grad():
            probs_e = torch.softmax(tiny(result.explanation).float(), 1)
            probs_r = torch.softmax(tiny(result.reference).float(), 1)
        targets = result.target[:, None]
        assert torch.equal(result.prob_explanation, probs_e.gather(1, targets)[:, 0])
        assert torch.equal(result.top1_explanation, probs_e.argmax(1))
        assert torch.equal(result.prob_reference, probs_r.gather(1, targets)[:, 0])
        binarised += bool(((result.mask == 0) | (result.mask == 1)).flatten(1).all(1).all())
    assert cache.hits >= 6  # the second and third runs reused the reference and its score
    assert binarised > 0, "in some run every item was binarised (the scores came from binarisation)"


def test_one_model_under_two_preprocessings_gets_the_reference_scored_under_each(toy_model):
    """The reference's score depends on how it is made 8-bit: the cache must not serve one wrapper's
    score to another wrapper of the same module."""
    from dataclasses import replace

    from engine import Preprocessing

    other = replace(toy_model, preprocessing=Preprocessing(crop=(32, 32), resize=36, mean=(0.5,) * 3, std=(60.0,) * 3))
    cache = engine.ReferenceCache(size=2)
    x = torch.rand(1, 3, 32, 32) * 3 - 1
    config = FGVisConfig(steps=2, patience=0, reference="zero")
    for model in (toy_model, other):
        cached = explain(model, x, config=config, cache=cache)
        fresh = explain(model, x, config=config)
        assert torch.equal(cached.prob_reference, fresh.prob_reference)
