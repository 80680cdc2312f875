"""Each metric on a tiny case whose answer is computed by hand in the comments."""

from __future__ import annotations

import dataclasses
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from engine.core.explanation import FGVisConfig
from engine.core.fgvis import explain
from engine.core.optimisation import Optimisation
from engine.evaluation.metrics import (
    concentration,
    delete_top,
    deletion_insertion,
    energy_inside,
    excess_activation,
    goal_met,
    mask_budget,
    pointing_chance,
    pointing_game,
    randomisation_check,
    ranking,
    round_trip_8bit,
    sparsity,
    spearman,
    top_pixels,
)
from engine.models.loading import ClassifierModel
from engine.models.preprocess import Preprocessing


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


def test_pointing_game_tolerance_is_torchrays_disc():
    truth = torch.zeros(4, 5, 5, dtype=torch.bool)
    truth[:, 2, 2] = True
    evidence = torch.zeros(4, 5, 5)
    evidence[0, 2, 2] = 1.0  # on the object
    evidence[1, 0, 0] = 1.0  # two pixels away diagonally: distance^2 8
    evidence[2, 2, 0] = 1.0  # two pixels away in a row: distance^2 4
    evidence[3, 1, 1] = 1.0  # one pixel away diagonally: distance^2 2
    assert pointing_game(evidence, truth).tolist() == [True, False, False, False]
    # Hit if distance^2 < t^2: 8, 4 are not < 4 (a (2t+1)^2 square would accept both).
    assert pointing_game(evidence, truth, tolerance=2).tolist() == [True, False, False, True]
    assert pointing_game(evidence, truth, tolerance=3).tolist() == [True, True, True, True]
    assert pointing_game(torch.zeros(1, 5, 5), truth[:1]).tolist() == [False]  # an empty map never hits


def test_pointing_ties_are_broken_by_a_seeded_draw_among_the_maxima():
    truth = torch.zeros(200, 5, 5, dtype=torch.bool)
    truth[:, 0, 0] = True  # the first pixel in raster order
    flat = torch.ones(200, 5, 5)  # every pixel is a maximum
    hits = pointing_game(flat, truth)
    assert 0 < hits.sum() < 30  # about 1 in 25, not every item (first maximum)
    assert np.array_equal(hits, pointing_game(flat, truth)) and not np.array_equal(
        hits, pointing_game(flat, truth, seed=1)
    )  # reproducible, and the seed matters
    two = torch.zeros(200, 5, 5)
    two[:, 0, 0] = two[:, 4, 4] = 1.0  # two maxima, one on the object; lower values never win
    two[:, 2, 2] = 0.5
    assert 60 < pointing_game(two, truth).sum() < 140


def test_pointing_game_leaves_the_global_rngs_alone():
    np.random.seed(3)
    torch.manual_seed(3)
    before = np.random.get_state()[1].copy(), torch.get_rng_state()
    pointing_game(torch.ones(3, 4, 4), torch.ones(3, 4, 4, dtype=torch.bool))
    assert np.array_equal(np.random.get_state()[1], before[0]) and torch.equal(torch.get_rng_state(), before[1])


def test_pointing_chance_level():
    truth = torch.zeros(2, 10, 10, dtype=torch.bool)
    truth[0, 5, 5] = True
    truth[1] = True
    # One pixel, disc of radius 2 (distance^2 < 4): the pixel and its 8 neighbours -> 9 of 100.
    assert pointing_chance(truth, 2).tolist() == pytest.approx([0.09, 1.0])
    assert pointing_chance(truth, 0).tolist() == pytest.approx([0.01, 1.0])


def test_concentration_on_hand_made_maps():
    uniform = torch.ones(1, 10, 10)
    tenth = torch.zeros(1, 10, 10)
    tenth[0, 0] = 1.0  # all evidence in one row = 10 % of the pixels
    half = torch.zeros(1, 10, 10)
    half[0, :2] = 1.0  # spread over 20 %: the top 10 % hold half
    negative = tenth - 5 * (1 - tenth)  # negative values are no evidence
    maps = torch.cat([uniform, tenth, half, negative, torch.zeros(1, 10, 10)])
    assert concentration(maps).tolist() == pytest.approx([0.1, 1.0, 0.5, 1.0, 0.1])
    # (N, C, H, W) masks are averaged over channels first: one channel of the top row kept = same ratio.
    mask = torch.zeros(1, 3, 10, 10)
    mask[0, 0, 0] = 1.0
    mask[0, :, 1] = 1 / 9  # mean 1/9 in row 1, mean 1/3 in row 0: 10/3 of 40/9 total
    assert concentration(mask)[0] == pytest.approx(0.75)
    assert concentration(tenth, top=0.2)[0] == pytest.approx(1.0)


def test_binarisation_at_a_budget_on_a_hand_made_mask():
    mask = torch.ones(1, 3, 3, 3)
    mask[0, :, 0, 0] = 0.0  # removed
    mask[0, :, 1, 1] = 0.5  # half removed
    mask[0, :2, 2, 2] = 0.25  # two channels mostly removed: 1 - mean = 0.5
    mask[0, 0, 0, 2] = 0.7  # a trace: 1 - mean = 0.1
    budget = mask_budget(mask)
    assert budget.tolist() == [2]  # 1 + 0.5 + 0.5 + 0.1 = 2.1 pixels
    chosen = top_pixels(1 - mask.mean(1), budget)
    # The fully removed pixel, and one of the two tied at 0.5 (fixed order), nothing else.
    assert chosen.sum() == 2 and chosen[0, 0, 0] and (chosen[0, 1, 1] ^ chosen[0, 2, 2])
    module = MeanIsProbability()
    x = torch.full((1, 1, 3, 3), 0.9)
    p = delete_top(module, x, 1 - mask.mean(1), TARGET, torch.zeros_like(x), budget)
    assert p[0] == pytest.approx(0.9 * 7 / 9)  # the binarised map removes exactly those two pixels


def test_ranking_with_a_margin_removes_a_region_with_its_border():
    evidence = torch.zeros(1, 7, 7)
    evidence[0, 3, 3] = 1.0
    evidence[0, 0, 6] = 0.5
    order = ranking(evidence, margin=1)[0].tolist()
    assert order[0] == 3 * 7 + 3  # the strongest pixel first, then its 4 neighbours within 1 px
    assert set(order[1:5]) == {2 * 7 + 3, 4 * 7 + 3, 3 * 7 + 2, 3 * 7 + 4}
    assert order[5] == 6  # then the next region
    assert sorted(order) == list(range(49))


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


def test_randomisation_uses_its_own_generator_and_leaves_the_global_rngs_alone():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    seen = []

    def method(module, draws):
        if draws:
            torch.rand(draws)  # a method that uses the global RNG itself
        seen.append([p.clone() for p in module.parameters()])
        return torch.arange(8.0).view(1, 2, 4)

    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    states = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    randomisation_check(lambda module: method(module, 0), model)
    assert torch.equal(torch.get_rng_state(), states[0])  # not seeded, not reset, not advanced
    assert random.getstate() == states[1] and np.array_equal(np.random.get_state()[1], states[2])
    first = seen[1:]
    seen.clear()
    randomisation_check(lambda module: method(module, 1000), model)
    second = seen[1:]
    # The same randomised weights whatever the method drew, and different from the trained ones.
    assert all(torch.equal(a, b) for s, t in zip(first, second, strict=True) for a, b in zip(s, t, strict=True))
    assert not torch.equal(first[-1][0], next(model.parameters()))
    bound = 1 / (1 * 3 * 3) ** 0.5  # PyTorch's default range for the first convolution
    assert first[-1][0].abs().max() <= bound and first[-1][0].std() > bound / 4


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


def test_goal_met_is_the_optimisations_rule():
    config = FGVisConfig(preserve_ratio=0.9, delete_ratio=0.1)
    prob = torch.tensor([0.95, 0.85, 0.95, 0.05, 0.2])
    top1 = torch.tensor([0, 0, 1, 0, 0])
    targets = torch.zeros(5, dtype=torch.long)
    prob_original = torch.ones(5)
    top1_original = torch.tensor([0, 0, 0, 0, 0])
    for game in ("preserve", "delete"):
        expected = Optimisation.goal(
            SimpleNamespace(
                game=game, config=config, targets=targets, top1_original=top1_original, prob_original=prob_original
            ),
            prob,
            top1,
        )
        assert goal_met(game, config, prob, top1, targets, prob_original, top1_original).tolist() == expected.tolist()
    assert goal_met("preserve", config, prob, top1, targets, prob_original, top1_original).tolist() == [
        True, False, False, False, False,  # kept; too low; lost top-1; too low; too low
    ]  # fmt: skip


def test_8bit_round_trip_of_hand_made_explanations():
    classifier = ClassifierModel.from_module(
        MeanIsProbability(), preprocessing=Preprocessing(crop=(4, 4), resize=None, mean=(0.0,) * 3, std=(255.0,) * 3)
    )
    x = torch.full((2, 3, 4, 4), 128 / 255)  # pixel 128 everywhere: p(x) = 0.502
    result = explain(classifier, x, 0, game="delete", defense=False, config=FGVisConfig(steps=1))
    deleted = torch.full((3, 4, 4), 5 / 255)  # a real deletion: p 0.0196 <= 0.1 p(x), survives
    faint = x[1] - 0.4 / 255  # less than half an 8-bit level: rounds back to x
    result = dataclasses.replace(
        result,
        explanation=torch.stack([deleted, faint]),
        prob_explanation=torch.tensor([5 / 255, 0.01]),
        top1_explanation=torch.tensor([1, 1]),
    )
    trip = round_trip_8bit(classifier, result)
    assert trip.prob == pytest.approx([5 / 255, 128 / 255], abs=1e-6)
    assert trip.goal_met_float.tolist() == [True, True] and trip.goal_met.tolist() == [True, False]
    assert trip.survival_rate == 0.5
