"""A dataset whose evidence is known by construction, and the small CNN trained on it.

Each 64x64 RGB image has a smooth random texture, 3-6 distractors (squares, dots, short bars) and one
**target shape** -- plus, ring, triangle or L -- at a random place, size and colour. Colours come from the
same distribution for the shape and the distractors, and the bars are parts of a plus or an L, so only
the target shape's *form* decides the class; its pixels are the ground-truth evidence mask.

``python -m engine.synthetic train`` generates the data from
fixed seeds, trains :class:`ShapesCNN` deterministically on the CPU and writes the weights and a JSON
card (accuracy, seeds, timing) to ``resources/models/``; :func:`load_shapes_model` loads them.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

IMAGE_SIZE = 64
CLASSES = ("plus", "ring", "triangle", "ell")
WEIGHTS_NAME = "models/synthetic_shapes_cnn.pt"
CARD_NAME = "models/synthetic_shapes_cnn.json"
TRAIN_SEED, TEST_SEED = 1, 2


@dataclass
class ShapesData:
    """``images`` ``(N, 64, 64, 3)`` uint8, ``labels`` ``(N,)`` int64 class indices into :data:`CLASSES`,
    ``masks`` ``(N, 64, 64)`` bool: the target shape's pixels."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def generate(count: int, seed: int) -> ShapesData:
    """``count`` images from ``seed`` (the same seed always gives the same images); classes balanced."""
    rng = np.random.default_rng(seed)
    images = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    masks = np.empty((count, IMAGE_SIZE, IMAGE_SIZE), bool)
    labels = np.arange(count) % len(CLASSES)
    rng.shuffle(labels)
    for index, label in enumerate(labels):
        images[index], masks[index] = _draw(int(label), rng)
    return ShapesData(images, labels.astype(np.int64), masks)


def _draw(label: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    image = Image.fromarray(_texture(rng))
    draw = ImageDraw.Draw(image)
    size = int(rng.integers(16, 23))
    left = int(rng.integers(2, IMAGE_SIZE - size - 2))
    top = int(rng.integers(2, IMAGE_SIZE - size - 2))
    # Distractors first (never over the shape's box), the shape on top.
    for _ in range(int(rng.integers(3, 7))):
        _distractor(draw, rng, avoid=(left - 2, top - 2, left + size + 2, top + size + 2))
    mask_image = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    _shape(ImageDraw.Draw(mask_image), label, left, top, size, fill=255, rng=rng)
    mask = np.asarray(mask_image) > 127
    pixels = np.asarray(image).copy()
    pixels[mask] = _colour(rng)
    return pixels, mask


def _texture(rng: np.random.Generator) -> np.ndarray:
    """Smooth coloured noise plus fine grain, 0..255."""
    coarse = rng.uniform(40, 215, size=(6, 6, 3)).astype(np.float32)
    smooth = np.stack(
        [np.asarray(Image.fromarray(coarse[..., c]).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)) for c in range(3)],
        axis=-1,
    )
    grain = rng.normal(0, 12, size=(IMAGE_SIZE, IMAGE_SIZE, 3))
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def _shape(draw: ImageDraw.ImageDraw, label: int, left: int, top: int, size: int, fill, rng) -> None:
    right, bottom = left + size, top + size
    bar = max(3, size // 4)
    if CLASSES[label] == "plus":
        middle = left + size // 2
        draw.rectangle([middle - bar // 2, top, middle - bar // 2 + bar - 1, bottom], fill=fill)
        middle = top + size // 2
        draw.rectangle([left, middle - bar // 2, right, middle - bar // 2 + bar - 1], fill=fill)
    elif CLASSES[label] == "ring":
        draw.ellipse([left, top, right, bottom], outline=fill, width=bar)
    elif CLASSES[label] == "triangle":
        corners = [(left, bottom), (right, bottom), (left + size / 2, top)]
        if rng.random() < 0.5:  # pointing up or down
            corners = [(left, top), (right, top), (left + size / 2, bottom)]
        draw.polygon(corners, fill=fill)
    else:  # ell, in one of four orientations
        flip_x, flip_y = rng.random() < 0.5, rng.random() < 0.5
        x0 = right - bar + 1 if flip_x else left
        y0 = top if flip_y else bottom - bar + 1
        draw.rectangle([x0, top, x0 + bar - 1, bottom], fill=fill)
        draw.rectangle([left, y0, right, y0 + bar - 1], fill=fill)


def _distractor(draw: ImageDraw.ImageDraw, rng, avoid: tuple[int, int, int, int]) -> None:
    for _ in range(20):  # find a free spot
        kind = int(rng.integers(0, 3))
        width, height = {0: (rng.integers(5, 10),) * 2, 1: (rng.integers(4, 8),) * 2}.get(
            kind, (rng.integers(8, 14), rng.integers(3, 5))
        )
        if kind == 2 and rng.random() < 0.5:
            width, height = height, width
        x = int(rng.integers(0, IMAGE_SIZE - width))
        y = int(rng.integers(0, IMAGE_SIZE - height))
        box = [x, y, x + int(width) - 1, y + int(height) - 1]
        if box[2] < avoid[0] or box[0] > avoid[2] or box[3] < avoid[1] or box[1] > avoid[3]:
            if kind == 1:
                draw.ellipse(box, fill=_colour(rng))
            else:
                draw.rectangle(box, fill=_colour(rng))
            return


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


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, H, W)`` float32 in the model's input space ([-1, 1])."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def preprocessing():
    """The model's input pipeline as an :class:`~engine.preprocess.Preprocessing` (64x64, [-1, 1])."""
    from .preprocess import Preprocessing

    return Preprocessing(crop=(IMAGE_SIZE, IMAGE_SIZE), resize=IMAGE_SIZE, mean=(127.5,) * 3, std=(127.5,) * 3)


def train(out_dir: Path, *, train_count: int = 6000, test_count: int = 1000, epochs: int = 6, log=print) -> dict:
    """Generate the data, train :class:`ShapesCNN` deterministically (CPU, fixed seeds) and write
    ``synthetic_shapes_cnn.pt`` (state_dict) and ``.json`` (card) into ``out_dir``; returns the card."""
    started = time.perf_counter()
    torch.manual_seed(0)
    train_data, test_data = generate(train_count, TRAIN_SEED), generate(test_count, TEST_SEED)
    inputs, labels = to_tensor(train_data.images), torch.from_numpy(train_data.labels)
    model = ShapesCNN()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    batch = 64
    total_steps = epochs * math.ceil(len(labels) / batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=total_steps)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(labels), generator=generator)
        running = 0.0
        for start in range(0, len(labels), batch):
            chosen = order[start : start + batch]
            batch_inputs = inputs[chosen]
            if torch.rand((), generator=generator) < 0.5:
                batch_inputs = batch_inputs.flip(3)  # mirror: every class is symmetric or comes mirrored
            loss = F.cross_entropy(model(batch_inputs), labels[chosen])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            running += float(loss.detach()) * len(chosen)
        accuracy = evaluate(model, test_data)
        log(f"epoch {epoch + 1}/{epochs}: loss {running / len(labels):.3f}, test accuracy {accuracy:.3f}")
    model.eval()
    card = {
        "classes": list(CLASSES),
        "image_size": IMAGE_SIZE,
        "train_images": train_count,
        "test_images": test_count,
        "train_seed": TRAIN_SEED,
        "test_seed": TEST_SEED,
        "epochs": epochs,
        "test_accuracy": evaluate(model, test_data),
        "train_accuracy": evaluate(model, train_data),
        "parameters": sum(p.numel() for p in model.parameters()),
        "training_time_s": round(time.perf_counter() - started, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out_dir / Path(WEIGHTS_NAME).name)
    (out_dir / Path(CARD_NAME).name).write_text(json.dumps(card, indent=2) + "\n")
    return card


@torch.no_grad()
def evaluate(model: nn.Module, data: ShapesData) -> float:
    """Top-1 accuracy of ``model`` on ``data``."""
    model.eval()
    correct = 0
    for start in range(0, len(data), 256):
        logits = model(to_tensor(data.images[start : start + 256]))
        correct += int((logits.argmax(1) == torch.from_numpy(data.labels[start : start + 256])).sum())
    return correct / len(data)


def load_shapes_model():
    """The trained model shipped in ``resources/`` as a :class:`~engine.models.ClassifierModel`."""
    from .models import classifier_with_weights
    from .resources import required_resource

    return classifier_with_weights(
        ShapesCNN(), required_resource(WEIGHTS_NAME), preprocessing(), "synthetic_shapes", list(CLASSES)
    )


def main(argv: list[str] | None = None) -> int:
    import argparse

    from .resources import resource_path

    parser = argparse.ArgumentParser(prog="python -m engine.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["train"])
    parser.add_argument("--out", type=Path, default=resource_path("models"))
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-count", type=int, default=6000)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    card = train(args.out, train_count=args.train_count, epochs=args.epochs)
    print(json.dumps(card, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
