"""CUDA checks (opt-in: ``pytest -m gpu``; skipped on machines without a CUDA GPU)."""

from __future__ import annotations

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


def test_cuda_graph_replay_computes_what_the_eager_step_computes(real_model, samples):
    from engine.defense import ActivationFilter
    from engine.fgvis import _Optimisation
    from engine.models import frozen

    x, _ = real_model.preprocess(samples["coffee"])
    x = x.repeat(2, 1, 1, 1).cuda()
    module = real_model.module.cuda()
    with frozen(module):
        activation_filter = ActivationFilter()
        with torch.no_grad(), activation_filter.recording(module):  # as explain() does: scoped, fused
            targets = module(x).argmax(1)
        assert activation_filter.scoped
        p = torch.ones(2, device="cuda")
        loop = _Optimisation("preserve", FGVisConfig(), x, torch.zeros_like(x), targets, p, targets)
        loop.step(module, activation_filter, 1)  # eager, then records the graph
        assert loop.graph is not None and not loop.notes
        loop.graph.replay()
        replayed = [t.clone() for t in loop.graph_outputs]
        replayed_decisions = activation_filter.decisions()
        eager = loop._forward_backward(module, activation_filter)
        eager_decisions = activation_filter.decisions()
    module.cpu()
    for a, b in zip(replayed, eager, strict=True):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)
    changed = sum(int((a != b).sum()) for a, b in zip(replayed_decisions, eager_decisions, strict=True))
    assert changed <= 1e-4 * sum(a.numel() for a in eager_decisions)


def test_cuda_graph_run_matches_the_eager_run(real_model, samples):
    photos = [samples["coffee"], samples["chelsea"]]
    graphed = explain(real_model, photos, config=FGVisConfig(device="cuda", steps=30, patience=0))
    eager = explain(real_model, photos, config=FGVisConfig(device="cuda", steps=30, patience=0, cuda_graph=False))
    real_model.module.to("cpu")
    assert not graphed.warnings  # the graph was recorded (a failure would be reported here)
    # 30 optimisation steps amplify rounding differences of the kernels cuDNN picks: close, not equal.
    assert float((graphed.mask - eager.mask).abs().mean()) < 1e-3
    assert torch.allclose(graphed.prob_explanation, eager.prob_explanation, atol=0.01)
