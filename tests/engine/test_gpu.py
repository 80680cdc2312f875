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
