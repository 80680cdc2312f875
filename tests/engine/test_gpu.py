"""CUDA checks (opt-in: ``pytest -m gpu``; skipped on machines without a CUDA GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import FGVisConfig, explain

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_cuda_run_matches_the_cpu_contract(real_model, samples):
    result = explain(real_model, [samples["coffee"], samples["chelsea"]], config=FGVisConfig(device="cuda"))
    assert result.device.startswith("cuda") and result.mask.device.type == "cpu"
    assert torch.equal(result.top1_explanation, result.target)
    assert result.history[0].blocked_fraction.max() == 0  # reference pass and step 1 agree on the GPU
    real_model.module.to("cpu")


def test_cuda_deletion(real_model, samples):
    result = explain(real_model, samples["coffee"], game="delete", config=FGVisConfig(device="cuda"))
    assert result.prob_explanation[0] < 0.1 * result.prob_original[0]
    real_model.module.to("cpu")


def test_a_real_cuda_out_of_memory_splits_the_batch(real_model, samples):
    """Cap this process's CUDA memory so that 16 images do not fit but 4 do: a real OOM, handled."""
    real_model.module.to("cuda")
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    allowed = torch.cuda.memory_allocated() + 900 * 2**20  # measured: batch 4 ~0.6 GiB, batch 16 ~2 GiB
    torch.cuda.set_per_process_memory_fraction(allowed / total)
    try:
        result = explain(real_model, [samples["coffee"]] * 16, config=FGVisConfig(device="cuda", steps=3, patience=0))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        real_model.module.to("cpu")
    assert len(result) == 16 and torch.isfinite(result.prob_explanation).all()
    assert result.warnings and "ran out of memory on a batch of 16" in result.warnings[0]


def test_reference_cache_on_cuda(real_model, samples):
    from engine import ReferenceCache

    cache = ReferenceCache()
    config = FGVisConfig(device="cuda", steps=5, patience=0)
    first = explain(real_model, samples["coffee"], config=config, cache=cache)
    second = explain(real_model, samples["coffee"], config=config, cache=cache)
    real_model.module.to("cpu")
    assert cache.hits == 2 and second.history[0].blocked_fraction.max() == 0
    assert torch.allclose(first.prob_explanation, second.prob_explanation, atol=1e-4)


def _graph_loop(real_model, samples, **kwargs):
    """An optimisation of two photos on CUDA, set up as explain() does (scoped mode, fused filter)."""
    from engine.evaluation.bench import _FGVisStep

    x, _ = real_model.preprocess(samples["coffee"])
    module = real_model.module.cuda()
    step = _FGVisStep(module, x.repeat(2, 1, 1, 1).cuda(), defense=True, **kwargs)
    assert step.filter.scoped
    return step.loop, module, step.filter


def test_cuda_graph_replay_computes_what_the_eager_step_computes(real_model, samples):
    from engine.models.loading import frozen

    loop, module, activation_filter = _graph_loop(real_model, samples, graph_trial_rounds=0)
    with frozen(module):
        loop.step(module, activation_filter, 1)  # eager
        loop.step(module, activation_filter, 2)  # records the graph and replays it
        assert loop.model_pass.path == "graph" and not loop.notes
        replayed = [t.clone() for t in loop.model_pass(False)]
        replayed_decisions = activation_filter.decisions()
        assert torch.isfinite(activation_filter.blocked_fraction()).all()  # a replay counts
        eager = loop._forward_backward(module, activation_filter)
        eager_decisions = activation_filter.decisions()
    module.cpu()
    for a, b in zip(replayed, eager, strict=True):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)
    changed = sum(int((a != b).sum()) for a, b in zip(replayed_decisions, eager_decisions, strict=True))
    assert changed <= 1e-4 * sum(a.numel() for a in eager_decisions)


def test_the_graph_trial_settles_on_a_path_and_the_run_goes_on_with_it(real_model, samples):
    from engine.models.loading import frozen

    loop, module, activation_filter = _graph_loop(real_model, samples)
    with frozen(module):
        states = [loop.step(module, activation_filter, step) for step in range(1, 12)]
    module.cpu()
    model_pass = loop.model_pass
    assert model_pass.path in ("graph", "eager") and model_pass.summary and not loop.notes
    assert len(model_pass.timings["graph"]) == len(model_pass.timings["eager"]) in (1, 2)
    assert all(float(t) > 0 for t in model_pass.timings["graph"] + model_pass.timings["eager"])
    assert all(np.isfinite(s.target_prob).all() and np.isfinite(s.mask_mean).all() for s in states)
    # replays count every step; eager steps every 10th
    counted = [bool(np.isfinite(s.blocked_fraction).all()) for s in states]
    assert counted[0] and counted[9]
    assert all(counted[6:]) == (model_pass.path == "graph")


def test_a_dropped_graph_leaves_a_working_eager_run(real_model, samples):
    """Force the trial's other outcome (the graph must beat an eager pass taking no time)."""
    from engine.models.loading import frozen

    loop, module, activation_filter = _graph_loop(real_model, samples)
    with frozen(module):
        loop.step(module, activation_filter, 1)
        loop.model_pass.margin = -1.0
        states = [loop.step(module, activation_filter, step) for step in range(2, 12)]
    module.cpu()
    assert loop.model_pass.path == "eager" and "dropped" in loop.model_pass.summary
    assert all(np.isfinite(s.target_prob).all() for s in states)
    assert np.isfinite(states[-2].blocked_fraction).all()  # step 10 counted eagerly


def test_cuda_graph_run_matches_the_eager_run(real_model, samples):
    photos = [samples["coffee"], samples["chelsea"]]
    graphed = explain(real_model, photos, config=FGVisConfig(device="cuda", steps=30, patience=0))
    eager = explain(real_model, photos, config=FGVisConfig(device="cuda", steps=30, patience=0, cuda_graph=False))
    real_model.module.to("cpu")
    assert not graphed.warnings  # the graph was recorded (a failure would be reported here)
    # 30 optimisation steps amplify rounding differences of the kernels cuDNN picks: close, not equal.
    assert float((graphed.mask - eager.mask).abs().mean()) < 1e-3
    assert torch.allclose(graphed.prob_explanation, eager.prob_explanation, atol=0.01)
