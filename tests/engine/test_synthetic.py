"""The ground-truth data sets (easy shapes and clutter) and the small CNNs shipped in resources/models/."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from engine import load_model
from engine.core.defense import ActivationFilter
from engine.evaluation.synthetic import (
    CARD_NAME,
    CLASSES,
    CLUTTER_CARD_NAME,
    CLUTTER_WEIGHTS_NAME,
    TEST_SEED,
    ShapeBox,
    evaluate,
    generate,
    to_tensor,
)
from engine.models.resources import resource_path


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
    from engine.models.bundled import WEIGHTS_NAME, preprocessing
    from engine.models.loading import classifier_with_weights

    weights = resource_path(WEIGHTS_NAME)
    with pytest.raises(ModelLoadError, match=r"weights do not fit Sequential: .*missing keys"):
        classifier_with_weights(nn.Sequential(nn.Conv2d(3, 4, 3)), weights, preprocessing(), "wrong")


def test_clutter_generation_is_deterministic_and_leaves_the_easy_set_alone():
    first, again = generate(16, 7, "clutter"), generate(16, 7, "clutter")
    assert np.array_equal(first.images, again.images) and np.array_equal(first.masks, again.masks)
    assert first.objects == again.objects
    assert first.images.shape == (16, 64, 64, 3) and first.images.dtype == np.uint8
    assert np.bincount(first.labels, minlength=len(CLASSES)).tolist() == [4, 4, 4, 4]
    easy = generate(16, 7)
    assert easy.objects is None and not np.array_equal(easy.images, first.images)
    with pytest.raises(ValueError, match="unknown variant"):
        generate(1, 0, "hard")


def _inside(box: ShapeBox) -> tuple[slice, slice]:
    """The image rows and columns ``box`` covers."""
    return slice(max(box.top, 0), box.top + box.size + 1), slice(max(box.left, 0), box.left + box.size + 1)


def test_clutter_masks_are_the_target_instances_and_the_target_class_is_the_most_frequent():
    data = generate(64, 11, "clutter")
    for image, mask, label, objects in zip(data.images, data.masks, data.labels, data.objects, strict=True):
        targets = [box for box in objects if box.label == label]
        others = [box.label for box in objects if box.label != label]
        assert targets and len(set(others)) == len(others)  # at most one of each other class
        assert not others or len(targets) >= 2
        covered = np.zeros_like(mask)
        for box in targets:
            rows, columns = _inside(box)
            instance = mask[rows, columns]
            assert instance.sum() >= 12  # visible, even when small and cut by the border
            assert len(np.unique(image[rows, columns][instance], axis=0)) == 1  # drawn in one colour
            covered[rows, columns] = True
        assert not (mask & ~covered).any()  # nothing else is ground truth ...
        for box in objects:
            if box.label != label:
                assert not mask[_inside(box)].any()  # ... and no shape of another class


def test_clutter_set_has_several_instances_other_classes_all_sizes_and_border_crossings():
    data = generate(200, 12, "clutter")
    pairs = list(zip(data.objects, data.labels, strict=True))
    instances = np.array([sum(box.label == label for box in objects) for objects, label in pairs])
    assert set(instances.tolist()) == {1, 2, 3} and (instances >= 2).mean() > 0.5
    assert np.mean([any(box.label != label for box in objects) for objects, label in pairs]) > 0.5
    sizes = [box.size for objects in data.objects for box in objects]
    assert min(sizes) <= 10 and max(sizes) >= 28
    edges = (
        data.masks[:, 0].any(1) | data.masks[:, -1].any(1) | data.masks[:, :, 0].any(1) | data.masks[:, :, -1].any(1)
    )
    assert edges.mean() > 0.2  # the target touches the border in many images
    crossing = [
        box
        for objects in data.objects
        for box in objects
        if min(box.left, box.top) < 0 or max(box.left, box.top) + box.size > 63
    ]
    assert len(crossing) > 20


def test_shipped_clutter_model_is_small_and_classifies_unseen_clutter():
    model = load_model("synthetic_clutter")
    assert model.name == "synthetic_clutter" and model.labels == list(CLASSES) and model.weights_sha256
    card = json.loads(resource_path(CLUTTER_CARD_NAME).read_text())
    assert card["variant"] == "clutter" and card["test_accuracy"] >= 0.95
    assert card["parameters"] == sum(p.numel() for p in model.module.parameters()) < 100_000
    assert resource_path(CLUTTER_WEIGHTS_NAME).stat().st_size < 500_000
    assert evaluate(model.module, generate(200, TEST_SEED + 10, "clutter")) >= 0.93  # neither trained nor tested on


class _ReluCalls(TorchFunctionMode):
    """Test oracle: the output of every ReLU call, by function name."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        if "relu" in getattr(func, "__name__", ""):
            self.outputs.append(output.detach().clone())
        return output


def test_clutter_model_uses_every_relu_trap_and_the_filter_intercepts_each_call():
    module = load_model("synthetic_clutter").module
    x = to_tensor(generate(2, 5, "clutter").images)
    calls = {"relu": 0, "relu_inplace": 0}
    for name in calls:
        getattr(module, name).register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    oracle = _ReluCalls()
    with torch.no_grad(), oracle:
        module(x)
    assert calls == {"relu": 3, "relu_inplace": 1} and module.relu_inplace.inplace  # reused module, in place
    assert len(oracle.outputs) == 5  # so one ReLU call is functional, outside any module
    recorder = ActivationFilter()
    with torch.no_grad(), recorder.recording(module):
        module(x)
    assert recorder.num_activations == 5 and not recorder.scoped  # the functional call is seen, too
    for bounds, reference in zip(recorder.recorded, oracle.outputs, strict=True):
        assert torch.allclose(bounds.upper, reference, atol=1e-4)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    e = (x + 0.5 * noise).requires_grad_(True)
    with recorder.filtering(module):
        module(e)[:, 1].sum().backward()
    decisions = recorder.decisions()
    assert [d.shape for d in decisions] == [o.shape for o in oracle.outputs]  # a decision per call
    assert (recorder.layer_blocked_fractions() > 0).all()  # and each call blocks units of the changed input
