"""The ground-truth dataset and the small CNN shipped in resources/models/."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine import load_model
from engine.resources import resource_path
from engine.synthetic import CARD_NAME, CLASSES, TEST_SEED, evaluate, generate


def test_generation_is_deterministic_balanced_and_masks_are_the_shape():
    first, again, other = generate(12, 7), generate(12, 7), generate(12, 8)
    assert np.array_equal(first.images, again.images) and np.array_equal(first.masks, again.masks)
    assert not np.array_equal(first.images, other.images)
    assert first.images.shape == (12, 64, 64, 3) and first.images.dtype == np.uint8
    assert np.bincount(first.labels, minlength=len(CLASSES)).tolist() == [3, 3, 3, 3]
    for image, mask in zip(first.images, first.masks, strict=True):
        assert 0.01 < mask.mean() < 0.15  # a small object
        assert len(np.unique(image[mask], axis=0)) == 1  # drawn in one colour, on top of everything


def test_shipped_model_classifies_unseen_shapes_and_matches_its_card():
    model = load_model("synthetic_shapes")
    assert model.labels == list(CLASSES) and model.weights_sha256
    card = json.loads(resource_path(CARD_NAME).read_text())
    assert card["test_accuracy"] >= 0.95
    accuracy = evaluate(model.module, generate(200, TEST_SEED + 10))  # images neither trained nor tested on
    assert accuracy >= 0.95


def test_weights_for_another_architecture_are_a_clear_error():
    from torch import nn

    from engine.errors import ModelLoadError
    from engine.models import classifier_with_weights
    from engine.synthetic import WEIGHTS_NAME, preprocessing

    weights = resource_path(WEIGHTS_NAME)
    with pytest.raises(ModelLoadError, match=r"weights do not fit Sequential: .*missing keys"):
        classifier_with_weights(nn.Sequential(nn.Conv2d(3, 4, 3)), weights, preprocessing(), "wrong")
