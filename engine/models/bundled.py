"""The small CNNs shipped in ``resources/models/`` for the evaluation suite and the tests: their
architectures, input pipeline and loader (:func:`load_bundled`). The data they were trained on, and the
training command, are in :mod:`engine.evaluation.synthetic`.

Architectures: ``(N, 3, 64, 64)`` input in [-1, 1] -> ``(N, 4)`` logits over :data:`CLASSES`."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

IMAGE_SIZE = 64
CLASSES = ("plus", "ring", "triangle", "ell")
WEIGHTS_NAME = "models/synthetic_shapes_cnn.pt"
CARD_NAME = "models/synthetic_shapes_cnn.json"
CLUTTER_WEIGHTS_NAME = "models/synthetic_clutter_cnn.pt"
CLUTTER_CARD_NAME = "models/synthetic_clutter_cnn.json"
PLANTED_WEIGHTS_NAME = "models/synthetic_planted_cnn.pt"
PLANTED_CARD_NAME = "models/synthetic_planted_cnn.json"
#: Data set variant -> name of its model for :func:`engine.models.loading.load_model`.
MODEL_NAMES = {"shapes": "synthetic_shapes", "clutter": "synthetic_clutter", "planted": "synthetic_planted"}


class ShapesCNN(nn.Module):
    """Four 3x3 conv blocks (BN, ReLU; max-pool after the first three), global average pooling and a
    linear layer: ``(N, 3, 64, 64)`` normalised input -> ``(N, 4)`` logits. ~37 k parameters."""

    def __init__(self, classes: int = len(CLASSES), width: int = 24) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for index, out in enumerate((width, width, 2 * width, 2 * width)):
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            if index < 3:
                layers.append(nn.MaxPool2d(2))
            channels = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


class ClutterCNN(nn.Module):
    """Five 3x3 conv blocks (BN, ReLU; a residual sum around the fourth; max-pool after the first, second
    and fourth), global average pooling and a linear layer: ``(N, 3, 64, 64)`` normalised input ->
    ``(N, 4)`` logits. ~59 k parameters at ``width=24``.

    Its activations are applied in the three ways a gradient filter must not miss: the module
    :attr:`relu` is called three times per forward, the second block uses the functional ``F.relu`` and
    the residual sum goes through the in-place module :attr:`relu_inplace` -- five ReLU calls in all.
    """

    def __init__(self, classes: int = len(CLASSES), width: int = 24) -> None:
        super().__init__()
        wide = 2 * width
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(inputs, out, 3, padding=1, bias=False), nn.BatchNorm2d(out))
            for inputs, out in ((3, width), (width, width), (width, wide), (wide, wide), (wide, wide))
        )
        self.relu = nn.ReLU()
        self.relu_inplace = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.classifier = nn.Linear(wide, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv1, conv2, conv3, conv4, conv5 = self.convs
        x = self.pool(self.relu(conv1(x)))  # 32 x 32
        x = self.pool(F.relu(conv2(x)))  # 16 x 16
        x = self.relu(conv3(x))
        x = self.pool(self.relu_inplace(conv4(x) + x))  # 8 x 8
        return self.classifier(self.relu(conv5(x)).mean((2, 3)))


def preprocessing():
    """The model's input pipeline as an :class:`~engine.models.preprocess.Preprocessing` (64x64, [-1, 1])."""
    from .preprocess import Preprocessing

    return Preprocessing(crop=(IMAGE_SIZE, IMAGE_SIZE), resize=IMAGE_SIZE, mean=(127.5,) * 3, std=(127.5,) * 3)


#: Per variant: the architecture and its weights and card resources.
ARCHITECTURES: dict[str, tuple[Callable[[], nn.Module], str, str]] = {
    "shapes": (ShapesCNN, WEIGHTS_NAME, CARD_NAME),
    "clutter": (ClutterCNN, CLUTTER_WEIGHTS_NAME, CLUTTER_CARD_NAME),
    "planted": (lambda: ShapesCNN(width=16), PLANTED_WEIGHTS_NAME, PLANTED_CARD_NAME),
}


def load_bundled(variant: str = "shapes"):
    """The trained model of ``variant`` (``"shapes"``, ``"clutter"`` or ``"planted"``) shipped in ``resources/`` as a
    :class:`~engine.models.loading.ClassifierModel` named ``MODEL_NAMES[variant]``."""
    from .loading import classifier_with_weights
    from .resources import required_resource

    architecture, weights_name, _ = ARCHITECTURES[variant]
    return classifier_with_weights(
        architecture(), required_resource(weights_name), preprocessing(), MODEL_NAMES[variant], list(CLASSES)
    )
