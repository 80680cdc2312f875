"""FGVis engine: fine-grained, defended visual explanations of CNN classifiers (no Qt here).

Typical use::

    import engine
    model = engine.load_model()                       # EfficientNet-Lite0, ImageNet, offline
    result = engine.explain(model, "photo.jpg", game="preserve")
    result.prob_original, result.prob_explanation     # the explanation, tested on the model
"""

from .errors import (
    ConfigError,
    DefenseError,
    DeviceError,
    FGVisError,
    ImageLoadError,
    ModelLoadError,
    TargetError,
)
from .fgvis import explain
from .images import load_image
from .models import DEFAULT_MODEL, ClassifierModel, Prediction, load_model
from .preprocess import Geometry, Preprocessing
from .resources import sample_images
from .types import Explanation, FGVisConfig, StepState

__all__ = [
    "DEFAULT_MODEL",
    "ClassifierModel",
    "ConfigError",
    "DefenseError",
    "DeviceError",
    "Explanation",
    "FGVisConfig",
    "FGVisError",
    "Geometry",
    "ImageLoadError",
    "ModelLoadError",
    "Prediction",
    "Preprocessing",
    "StepState",
    "TargetError",
    "explain",
    "load_image",
    "load_model",
    "sample_images",
]
