"""FGVis engine: fine-grained, defended visual explanations of CNN classifiers (no Qt here).

Typical use::

    import engine
    model = engine.load_model()                       # EfficientNet-Lite0, ImageNet, offline
    result = engine.explain(model, "photo.jpg", game="preserve")
    result.prob_original, result.prob_explanation     # the explanation, tested on the model

The names below are imported on first use (PEP 562), so ``import engine`` -- or a light submodule such
as ``engine.models.resources`` -- does not import torch: the desktop app shows its window first.
"""

from __future__ import annotations

import importlib
import os

# Idle OpenMP threads spin briefly, then sleep, so that two CPU-heavy processes on one machine do not take
# each other's cores (engine.core.threads has the measurements). Only effective when set before torch loads.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

_EXPORTS = {
    "ConfigError": ".errors",
    "DefenseError": ".errors",
    "DeviceError": ".errors",
    "FGVisError": ".errors",
    "ImageLoadError": ".errors",
    "ModelLoadError": ".errors",
    "TargetError": ".errors",
    "explain": ".core.fgvis",
    "ReferenceCache": ".core.reference",
    "load_image": ".models.images",
    "DEFAULT_MODEL": ".models.loading",
    "ClassifierModel": ".models.loading",
    "Prediction": ".models.loading",
    "load_model": ".models.loading",
    "Geometry": ".models.preprocess",
    "Preprocessing": ".models.preprocess",
    "sample_images": ".models.resources",
    "Explanation": ".core.explanation",
    "FGVisConfig": ".core.explanation",
    "StepState": ".core.explanation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
