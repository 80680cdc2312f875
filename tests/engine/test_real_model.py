"""FGVis on the real pretrained EfficientNet-Lite0 and real photos (method notes Sec. 4).

These are the checks that the method works, not just runs: preservation keeps the decision with a
sparse mask, deletion destroys it by changing few pixels, and without the defense the optimiser
invents evidence that inflates the score.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import FGVisConfig, explain
from engine.evaluation.metrics import concentration

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@pytest.fixture(scope="module")
def preserved(real_model, samples):
    return explain(real_model, [samples[name] for name in PHOTOS], game="preserve")


#: The defense comparison on the paper's setting: zero reference, ``e`` in float, no binarisation (which
#: happens after the optimisation the defense acts on). Scoring ``e`` as 8-bit pixels (the default) takes
#: away the sub-level perturbations undefended adversarial evidence is partly made of, so it is not the
#: setting in which to show what the gradient filter does.
ZERO = FGVisConfig(reference="zero", binarize=False, quantize=False)


@pytest.fixture(scope="module")
def preserved_zero(real_model, samples):
    return explain(real_model, [samples[name] for name in PHOTOS], game="preserve", config=ZERO)


@pytest.fixture(scope="module")
def preserved_zero_undefended(real_model, samples):
    return explain(real_model, [samples[name] for name in PHOTOS], game="preserve", defense=False, config=ZERO)


def test_preservation_keeps_the_target_top1_with_a_sparse_mask(preserved):
    assert torch.equal(preserved.top1_explanation, preserved.target)
    assert torch.all(preserved.prob_explanation >= 0.9 * preserved.prob_original - 1e-6)
    assert preserved.goal_met.all()
    mask_mean = dict(zip(PHOTOS, preserved.mask.flatten(1).mean(1).tolist(), strict=True))
    assert all(value < 0.5 for value in mask_mean.values()), mask_mean
    # Localised, not faded: the strongest 10 % of pixels hold a large share of the evidence (the defaults
    # before 2026-12 gave 0.10-0.15 here, a uniform map gives 0.10; docs/DEFAULTS.md).
    share = concentration(preserved.mask)
    assert np.median(share) >= 0.25, share


def test_deletion_destroys_the_decision_with_few_changed_pixels(real_model, samples):
    names = ("chelsea", "coffee")
    result = explain(real_model, [samples[name] for name in names], game="delete")
    assert torch.all(result.prob_explanation < 0.1 * result.prob_original), result.prob_explanation
    mask_mean = result.mask.flatten(1).mean(1)
    assert torch.all(mask_mean > 0.9), mask_mean


def test_without_defense_the_decision_survives_on_almost_no_pixels(preserved_zero, preserved_zero_undefended):
    """Adversarial evidence: undefended, the optimiser keeps the decision with ~0% of the image."""
    undefended = preserved_zero_undefended.mask.flatten(1).mean(1)
    defended = preserved_zero.mask.flatten(1).mean(1)
    assert preserved_zero_undefended.goal_met.all()
    assert torch.all(undefended < 0.02), undefended
    assert torch.all(defended > 5 * undefended.max()), (defended, undefended)
    blocked = np.nanmean([s.blocked_fraction.mean() for s in preserved_zero.history[1:]])  # NaN: not counted
    assert blocked > 0.01  # the filter really acted on the real model


def test_without_defense_the_score_inflates_with_it_it_stays_lower(real_model, samples):
    """Same fixed lambda for both: the undefended optimiser invents evidence and saturates the softmax.
    Run on the loop this comparison was calibrated on (the defaults before 2026-12: proximal sparsity,
    zero reference), which stays available."""
    images = [samples[name] for name in ("astronaut", "chelsea", "rocket")]
    config = FGVisConfig(
        steps=60,
        lambda_=0.5,
        patience=0,
        sparsity="proximal",
        lr=0.01,
        reference="zero",
        binarize=False,
        quantize=False,
    )
    on = explain(real_model, images, config=config)
    off = explain(real_model, images, defense=False, config=config)
    assert off.prob_explanation.mean() > on.prob_explanation.mean() + 0.1, (off.prob_explanation, on.prob_explanation)
    assert torch.all(off.prob_explanation > off.prob_original)


def test_explanation_image_is_a_valid_input_that_tests_the_explanation(real_model, preserved):
    """Save-and-reload round trip: the uint8 explanation image fed back gives the same decision."""
    for index in range(len(preserved)):
        pixels = preserved.explanation_image(index)
        assert pixels.dtype == np.uint8 and pixels.shape == (224, 224, 3)
        reloaded = real_model.preprocessing.normalize(torch.from_numpy(pixels).permute(2, 0, 1)[None].float())
        probs = real_model.probabilities(reloaded)[0]
        target = int(preserved.target[index])
        # Only 8-bit rounding separates the two (top-1 itself may flip where it sits on the goal's edge).
        assert abs(float(probs[target]) - float(preserved.prob_explanation[index])) < 0.05


def test_maps_at_original_resolution(preserved, samples):
    from PIL import Image

    width, height = Image.open(samples["coffee"]).size
    coffee = PHOTOS.index("coffee")
    evidence = preserved.evidence_image(coffee, original_resolution=True)
    picture = preserved.explanation_image(coffee, original_resolution=True)
    assert evidence.shape == picture.shape == (height, width, 3)
    assert evidence.dtype == picture.dtype == np.uint8


def test_two_targets_in_one_image_give_two_different_explanations(real_model, samples):
    tiger_cat, egyptian_cat = real_model.resolve_target("tiger cat"), real_model.resolve_target("Egyptian cat")
    result = explain(real_model, samples["chelsea"], [tiger_cat, egyptian_cat], config=FGVisConfig(steps=60))
    assert result.target.tolist() == [tiger_cat, egyptian_cat]
    difference = (result.mask[0] - result.mask[1]).abs().mean().item()
    assert difference > 0.02, difference
