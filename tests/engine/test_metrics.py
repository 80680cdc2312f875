"""Each metric on a tiny case whose answer is computed by hand in the comments."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from engine.metrics import (
    delete_top,
    deletion_insertion,
    energy_inside,
    excess_activation,
    mask_budget,
    pointing_game,
    randomisation_check,
    ranking,
    sparsity,
    spearman,
)  # fmt: skip


class MeanIsProbability(nn.Module):
    """Two classes; softmax gives class 0 exactly the mean pixel value (values in (0, 1))."""

    def forward(self, x):
        mean = x.flatten(1).mean(1)
        return torch.stack([mean.log(), (1 - mean).log()], 1)


X = torch.tensor([[[[0.8, 0.6], [0.4, 0.2]]]])  # (1, 1, 2, 2), mean 0.5
REFERENCE = torch.full_like(X, 0.1)
TARGET = torch.tensor([0])


def test_deletion_curve_and_auc_by_hand():
    curve = deletion_insertion(MeanIsProbability(), X, X[:, 0], TARGET, REFERENCE, mode="deletion", step=0.25)
    # Remove 0.8, then 0.6, 0.4, 0.2 (replaced by 0.1): means 0.5, 0.325, 0.2, 0.125, 0.1.
    assert np.allclose(curve.fractions, [0, 0.25, 0.5, 0.75, 1])
    assert np.allclose(curve.probs[0], [0.5, 0.325, 0.2, 0.125, 0.1])
    # Trapezoids of width 0.25: 0.25 * (0.5/2 + 0.325 + 0.2 + 0.125 + 0.1/2) = 0.2375.
    assert curve.auc[0] == pytest.approx(0.2375)


def test_insertion_curve_and_auc_by_hand():
    curve = deletion_insertion(MeanIsProbability(), X, X[:, 0], TARGET, REFERENCE, mode="insertion", step=0.25)
    # From all 0.1, insert 0.8 first: means 0.1, 0.275, 0.4, 0.475, 0.5.
    assert np.allclose(curve.probs[0], [0.1, 0.275, 0.4, 0.475, 0.5])
    assert curve.auc[0] == pytest.approx(0.25 * (0.05 + 0.275 + 0.4 + 0.475 + 0.25))


def test_a_worse_ranking_has_a_higher_deletion_auc():
    best = deletion_insertion(MeanIsProbability(), X, X[:, 0], TARGET, REFERENCE, step=0.25)
    worst = deletion_insertion(MeanIsProbability(), X, -X[:, 0], TARGET, REFERENCE, step=0.25)
    assert worst.auc[0] > best.auc[0]


def test_equal_budget_deletion_and_mask_budget():
    # Delete the two strongest pixels (0.8, 0.6 -> 0.1): mean (0.1 + 0.1 + 0.4 + 0.2) / 4 = 0.2.
    assert delete_top(MeanIsProbability(), X, X[:, 0], TARGET, REFERENCE, [2])[0] == pytest.approx(0.2)
    mask = torch.ones(1, 3, 2, 2)
    mask[0, :, 0, 0] = 0.0  # one pixel fully removed
    mask[0, 0, 1, 1] = 0.25  # one channel of another: 1 - mean = 0.25
    assert mask_budget(mask).tolist() == [1]  # 1.25 pixels -> 1


def test_pointing_game_with_and_without_tolerance():
    truth = torch.zeros(2, 5, 5, dtype=torch.bool)
    truth[:, 2, 2] = True
    evidence = torch.zeros(2, 5, 5)
    evidence[0, 2, 2] = 1.0  # on the object
    evidence[1, 0, 0] = 1.0  # two pixels away (diagonally)
    assert pointing_game(evidence, truth).tolist() == [True, False]
    assert pointing_game(evidence, truth, tolerance=2).tolist() == [True, True]
    assert pointing_game(torch.zeros(1, 5, 5), truth[:1]).tolist() == [False]  # an empty map never hits


def test_energy_inside_the_mask():
    truth = torch.tensor([[[True, False], [False, False]]])
    evidence = torch.tensor([[[3.0, 1.0], [0.0, -5.0]]])  # negatives are not evidence: 3 / (3 + 1)
    assert energy_inside(evidence, truth)[0] == pytest.approx(0.75)


def test_spearman_by_hand():
    a = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    assert spearman(a, a)[0] == pytest.approx(1.0)
    assert spearman(a, -a)[0] == pytest.approx(-1.0)
    # One swapped pair: 1 - 6 * (1 + 1) / (4 * 15) = 0.8.
    assert spearman(a, torch.tensor([[[1.0, 3.0], [2.0, 4.0]]]))[0] == pytest.approx(0.8)


def test_ties_are_ranked_in_a_fixed_order_that_is_not_the_raster_order():
    flat = torch.zeros(1, 8, 8)
    first, second = ranking(flat), ranking(flat)
    assert torch.equal(first, second) and sorted(first[0].tolist()) == list(range(64))
    assert first[0].tolist() != list(range(64))
    strong = torch.zeros(1, 8, 8)
    strong[0, 7, 7] = 1.0
    assert ranking(strong)[0, 0] == 63


def test_excess_activation_by_hand():
    module = nn.Sequential(nn.ReLU())
    x = torch.tensor([[1.0, -1.0, 2.0, 0.0]])
    e = torch.tensor([[2.0, -1.0, 1.0, 0.5]])
    units, mass = excess_activation(module, x, e)
    # h(x) = [1, 0, 2, 0], h(e) = [2, 0, 1, 0.5]: units 0 and 3 above (2 of 4); excess 1 + 0.5 of 3.5.
    assert units.tolist() == [0.5]
    assert mass[0] == pytest.approx(1.5 / 3.5)


def test_sparsity_measures():
    constant = torch.ones(1, 8, 8)
    checkerboard = (torch.arange(8).view(-1, 1) + torch.arange(8).view(1, -1)) % 2
    half = torch.zeros(1, 8, 8)
    half[0, :4] = 1.0
    maps = torch.cat([constant, checkerboard[None].float(), half])
    measures = sparsity(maps)
    assert measures["l1"].tolist() == [1.0, 0.5, 0.5]
    assert measures["active"].tolist() == [1.0, 0.5, 0.5]
    high = measures["high_frequency"]
    assert high[0] == 0.0 and high[1] == pytest.approx(1.0) and high[2] < 0.2  # flat, finest, coarse


def test_cascading_randomisation_order_and_sensitivity():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))
    before = [p.clone() for p in model.parameters()]
    x = torch.randn(2, 1, 6, 6)

    def input_gradient(module):
        inputs = x.clone().requires_grad_(True)
        module(inputs).sum().backward()
        return inputs.grad[:, 0].abs()

    stages = randomisation_check(input_gradient, model)
    assert [name for name, _ in stages] == ["2", "0"]  # from the output towards the input
    assert all(rho.shape == (2,) for _, rho in stages) and stages[-1][1].mean() < 0.9
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # original untouched
    constant = randomisation_check(lambda module: torch.ones(2, 6, 6).cumsum(2), model)
    assert all(np.allclose(rho, 1.0) for _, rho in constant)  # a map blind to the weights never decorrelates


def test_randomisation_stages_are_spread_over_a_deep_cascade():
    model = nn.Sequential(*[nn.Linear(3, 3) for _ in range(10)])
    calls = []

    def method(module):
        calls.append(1)
        return torch.rand(1, 2, 2)

    stages = randomisation_check(method, model, max_stages=4)
    assert [name for name, _ in stages] == ["9", "6", "3", "0"]  # top alone, ..., all ten layers
    assert len(calls) == 5  # the original and four stages
