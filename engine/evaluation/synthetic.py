"""Datasets whose evidence is known by construction, and the small CNNs trained on them.

Three variants, each with its own model:

* ``"shapes"`` (the easy set, model ``synthetic_shapes``): each 64x64 RGB image has a smooth random
  texture, 3-6 distractors (squares, dots, short bars) and one **target shape** -- plus, ring, triangle or
  L -- at a random place, size and colour. Colours come from the same distribution for the shape and the
  distractors, and the bars are parts of a plus or an L, so only the target shape's *form* decides the
  class; its pixels are the ground-truth evidence mask.
* ``"clutter"`` (the hard set, model ``synthetic_clutter``): a striped, checkered or blotched background in
  two random colours over a smooth coloured texture; 1-3 **instances** of the target class; when there are
  two or more, 1-3 full shapes of *other* classes (one of each), so the class is the form that occurs most
  often; 0-3 parts (squares, dots, bars). Sizes range from 8 to 30 px (one scale per image, +-25 % per
  object), objects may cross one image border by up to a quarter of their size, and every colour is drawn
  to stand out from the background beneath it. The mask is the pixels of all target instances.
  Its CNN, :class:`ClutterCNN`, applies its ReLUs as a reused module, a functional call and an in-place
  module, the cases an activation filter must catch beyond plain ``nn.ReLU`` layers.
* ``"planted"`` (the Clever-Hans set, model ``synthetic_planted``): the easy set, where
  :data:`PLANTED_SHARE` of the images of one class (:data:`PLANTED_CLASS`, "ring") also carry a spurious
  **marker** -- a small black-and-white checker tag near the bottom-left corner, like a photographer's
  copyright tag -- that no other class has. A model trained on it learns the shortcut; ``fgvis bench
  analysis`` checks that a dataset review finds the marked images as their own, flagged, cluster.
  ``ShapesData.marked`` says which images carry it and ``ShapesData.markers`` holds its pixels.

``python -m engine.evaluation.synthetic train [--variant clutter|planted]`` generates the data from fixed seeds,
trains the variant's CNN deterministically on the CPU and writes the weights and a JSON card (accuracy, seeds,
timing) to ``resources/models/``; :func:`load_shapes_model` loads them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from engine.models.bundled import (
    CARD_NAME,
    CLASSES,
    CLUTTER_CARD_NAME,
    CLUTTER_WEIGHTS_NAME,
    IMAGE_SIZE,
    MODEL_NAMES,
    PLANTED_CARD_NAME,
    PLANTED_WEIGHTS_NAME,
    WEIGHTS_NAME,
    ClutterCNN,
    ShapesCNN,
    load_bundled,
)

TRAIN_SEED, TEST_SEED = 1, 2
#: Smallest and largest object scale of the clutter set, in pixels.
CLUTTER_SIZES = (8, 30)
#: The clutter model's training images and epochs.
TRAIN_COUNT_CLUTTER, EPOCHS_CLUTTER = 8000, 8
#: The Clever-Hans set: the class whose images may carry the marker, the share of them that do, the marker's
#: side in pixels (a 2x2 checker of black and white squares) and its top-left corner (jittered by up to
#: MARKER_JITTER px in each direction); the model's weights, card, training images and epochs.
PLANTED_CLASS, PLANTED_SHARE, MARKER_SIZE = 1, 0.5, 8
#: How much of its own colour a marked image's shape keeps (the rest is the background's): the tagged images
#: come from a worse source, where the tag is the easier cue.
MARKED_SHAPE_CONTRAST = 0.35
#: Standard deviation of the fine grain on the planted set's backgrounds (the easy set has 12): a smooth
#: background leaves the evidence on the shapes and the marker.
PLANTED_GRAIN = 0.0
MARKER_CORNER, MARKER_JITTER = (3, IMAGE_SIZE - MARKER_SIZE - 3), 2
TRAIN_COUNT_PLANTED, EPOCHS_PLANTED = 3000, 5


class ShapeBox(NamedTuple):
    """A full shape drawn in a clutter image: class index, top-left corner and size in pixels. It covers
    ``[left, left + size] x [top, top + size]``, which may reach past the image border."""

    label: int
    left: int
    top: int
    size: int


@dataclass
class ShapesData:
    """``images`` ``(N, 64, 64, 3)`` uint8, ``labels`` ``(N,)`` int64 class indices into :data:`CLASSES`,
    ``masks`` ``(N, 64, 64)`` bool: the target shape's pixels (every target instance's, in the clutter
    set); ``objects``: per image, the full shapes drawn (target instances first), clutter set only;
    ``marked`` ``(N,)`` bool and ``markers`` ``(N, 64, 64)`` bool: which images carry the spurious marker and
    its pixels, planted set only."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    objects: list[list[ShapeBox]] | None = None
    marked: np.ndarray | None = None
    markers: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)


def generate(count: int, seed: int, variant: str = "shapes") -> ShapesData:
    """``count`` images of ``variant`` (``"shapes"`` or ``"clutter"``, see the module docstring) from
    ``seed``; the same seed and variant always give the same images. Classes balanced."""
    if variant not in MODEL_NAMES:
        raise ValueError(f"unknown variant {variant!r}: choose from {', '.join(MODEL_NAMES)}")
    rng = np.random.default_rng(seed)
    images = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    masks = np.empty((count, IMAGE_SIZE, IMAGE_SIZE), bool)
    labels = np.arange(count) % len(CLASSES)
    rng.shuffle(labels)
    if variant == "shapes":
        for index, label in enumerate(labels):
            images[index], masks[index] = _draw(int(label), rng)
        return ShapesData(images, labels.astype(np.int64), masks)
    if variant == "planted":
        return _generate_planted(labels, rng, images, masks)
    objects = []
    for index, label in enumerate(labels):
        images[index], masks[index], boxes = _draw_clutter(int(label), rng)
        objects.append(boxes)
    return ShapesData(images, labels.astype(np.int64), masks, objects)


def _generate_planted(labels: np.ndarray, rng: np.random.Generator, images: np.ndarray, masks: np.ndarray):
    """The easy set with the marker on :data:`PLANTED_SHARE` of the :data:`PLANTED_CLASS` images (chosen at
    random); a marked image is drawn again until its shape keeps 2 px away from the marker."""
    candidates = np.flatnonzero(labels == PLANTED_CLASS)
    marked = np.zeros(len(labels), bool)
    marked[rng.permutation(candidates)[: round(PLANTED_SHARE * len(candidates))]] = True
    markers = np.zeros(masks.shape, bool)
    for index, label in enumerate(labels):
        images[index], masks[index] = _draw(int(label), rng, PLANTED_GRAIN)
        if not marked[index]:
            continue
        left, top = (int(v) + int(rng.integers(-MARKER_JITTER, MARKER_JITTER + 1)) for v in MARKER_CORNER)
        near = (slice(max(top - 2, 0), top + MARKER_SIZE + 2), slice(max(left - 2, 0), left + MARKER_SIZE + 2))
        while masks[index][near].any():
            images[index], masks[index] = _draw(int(label), rng, PLANTED_GRAIN)
        images[index] = draw_marker(_faded(images[index], masks[index]), left, top)
        markers[index, top : top + MARKER_SIZE, left : left + MARKER_SIZE] = True
    return ShapesData(images, labels.astype(np.int64), masks, marked=marked, markers=markers)


def _faded(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``pixels`` with the shape under ``mask`` blended towards the mean colour around it (a ring of 3 px),
    keeping :data:`MARKED_SHAPE_CONTRAST` of its own colour."""
    grown = mask.copy()
    for _ in range(3):
        grown[1:] |= grown[:-1]
        grown[:-1] |= grown[1:]
        grown[:, 1:] |= grown[:, :-1]
        grown[:, :-1] |= grown[:, 1:]
    around = pixels[grown & ~mask].astype(np.float32).mean(0)
    faded = pixels.astype(np.float32)
    faded[mask] = MARKED_SHAPE_CONTRAST * faded[mask] + (1 - MARKED_SHAPE_CONTRAST) * around
    return np.clip(np.round(faded), 0, 255).astype(np.uint8)


def draw_marker(pixels: np.ndarray, left: int, top: int) -> np.ndarray:
    """A copy of ``pixels`` with the planted set's marker (a :data:`MARKER_SIZE` px 2x2 checker, black and
    white) at ``left, top``."""
    pixels = pixels.copy()
    half = MARKER_SIZE // 2
    for row in range(2):
        for col in range(2):
            value = 255 if (row + col) % 2 == 0 else 0
            y, x = top + row * half, left + col * half
            pixels[y : y + half, x : x + half] = value
    return pixels


def _draw(label: int, rng: np.random.Generator, grain: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    image = Image.fromarray(_texture(rng, grain))
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


def _texture(rng: np.random.Generator, grain: float = 12.0) -> np.ndarray:
    """Smooth coloured noise plus fine grain, 0..255."""
    coarse = rng.uniform(40, 215, size=(6, 6, 3)).astype(np.float32)
    smooth = np.stack(
        [
            np.asarray(Image.fromarray(coarse[..., c]).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC))
            for c in range(3)
        ],
        axis=-1,
    )
    if grain > 0:
        smooth = smooth + rng.normal(0, grain, size=(IMAGE_SIZE, IMAGE_SIZE, 3))
    return np.clip(smooth, 0, 255).astype(np.uint8)


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    red, green, blue = (int(v) for v in rng.integers(0, 256, size=3))
    return red, green, blue


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


def _draw_clutter(label: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[ShapeBox]]:
    pixels = _clutter_texture(rng)
    background = pixels.copy()  # what each colour must stand out from
    scale = math.exp(rng.uniform(math.log(CLUTTER_SIZES[0]), math.log(CLUTTER_SIZES[1])))
    taken: list[tuple[int, int, int, int]] = []
    wanted = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
    targets = [box for _ in range(wanted) if (box := _place(label, scale, taken, rng)) is not None]
    others: list[ShapeBox] = []
    if len(targets) >= 2:  # at most one of each other class: the target class stays the most frequent
        chosen = rng.permutation([c for c in range(len(CLASSES)) if c != label])[: int(rng.integers(1, 4))]
        others = [box for c in chosen if (box := _place(int(c), scale, taken, rng)) is not None]
    mask = np.zeros((IMAGE_SIZE, IMAGE_SIZE), bool)
    for box in (*targets, *others):
        shape = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
        _shape(ImageDraw.Draw(shape), box.label, box.left, box.top, box.size, fill=255, rng=rng)
        drawn = np.asarray(shape) > 127
        pixels[drawn] = _contrasting_colour(background[drawn], rng)
        if box.label == label:
            mask |= drawn
    for _ in range(int(rng.integers(0, 4))):
        _part(pixels, background, taken, rng)
    return pixels, mask, targets + others


def _clutter_texture(rng: np.random.Generator) -> np.ndarray:
    """Stripes (soft or hard), a checkerboard or blotches in two random colours, blended with the easy
    set's smooth texture: ``(64, 64, 3)`` uint8."""
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)
    kind = int(rng.integers(0, 3))
    if kind == 0:
        angle, period = rng.uniform(0, math.pi), rng.uniform(4, 14)
        weight = 0.5 + 0.5 * np.sin(2 * math.pi * ((x * math.cos(angle) + y * math.sin(angle)) / period + rng.random()))
        if rng.random() < 0.5:
            weight = (weight > 0.5).astype(np.float32)
    elif kind == 1:
        cell = int(rng.integers(3, 11))
        dx, dy = rng.integers(0, cell, size=2)
        weight = (((x + dx) // cell + (y + dy) // cell) % 2).astype(np.float32)
    else:
        grid = int(rng.integers(3, 8))
        coarse = Image.fromarray(rng.uniform(0, 1, size=(grid, grid)).astype(np.float32))
        smooth = np.asarray(coarse.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC))
        weight = np.clip((smooth - 0.5) * 4 + 0.5, 0, 1)
    colours = rng.uniform(30, 225, size=(2, 3)).astype(np.float32)
    pattern = colours[0] + weight[..., None] * (colours[1] - colours[0])
    return np.clip(0.6 * pattern + 0.4 * _texture(rng), 0, 255).astype(np.uint8)


def _place(label: int, scale: float, taken: list, rng: np.random.Generator) -> ShapeBox | None:
    """A free spot for a shape of about ``scale`` px (boxes 1 px apart; past one border by less than the
    bar width of a plus or an L, so that no bar is cut off), shrinking it when there is none; ``None`` when
    even 8 px does not fit. Appends to ``taken``."""
    size = int(np.clip(round(scale * rng.uniform(0.8, 1.25)), *CLUTTER_SIZES))
    while size >= CLUTTER_SIZES[0]:
        cut = max(1, size // 4 - 1)
        cut_x, cut_y = (cut, 0) if rng.random() < 0.5 else (0, cut)
        for _ in range(30):
            left = int(rng.integers(-cut_x, IMAGE_SIZE - size + cut_x))
            top = int(rng.integers(-cut_y, IMAGE_SIZE - size + cut_y))
            box = (left - 1, top - 1, left + size + 1, top + size + 1)
            if _free(box, taken):
                taken.append(box)
                return ShapeBox(label, left, top, size)
        size = int(size * 0.8)
    return None


def _free(box: tuple[int, int, int, int], taken: list) -> bool:
    return all(box[2] < other[0] or box[0] > other[2] or box[3] < other[1] or box[1] > other[3] for other in taken)


def _part(pixels: np.ndarray, background: np.ndarray, taken: list, rng: np.random.Generator) -> None:
    """A square, dot or bar (part of a plus or an L) on a free spot of ``pixels``, in place."""
    for _ in range(20):
        kind = int(rng.integers(0, 3))
        width, height = {0: (int(rng.integers(5, 10)),) * 2, 1: (int(rng.integers(4, 8)),) * 2}.get(
            kind, (int(rng.integers(8, 14)), int(rng.integers(3, 5)))
        )
        if kind == 2 and rng.random() < 0.5:
            width, height = height, width
        x, y = int(rng.integers(-2, IMAGE_SIZE - width + 2)), int(rng.integers(-2, IMAGE_SIZE - height + 2))
        box = (x - 1, y - 1, x + width, y + height)
        if _free(box, taken):
            taken.append(box)
            part = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
            draw = ImageDraw.Draw(part)
            (draw.ellipse if kind == 1 else draw.rectangle)([x, y, x + width - 1, y + height - 1], fill=255)
            drawn = np.asarray(part) > 127
            pixels[drawn] = _contrasting_colour(background[drawn], rng)
            return


def _contrasting_colour(under: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random colour far from most ``(K, 3)`` background pixels ``under`` it: of up to 8 draws, the first
    whose 10th-percentile RGB distance is >= 80, else the farthest."""
    best, best_distance = None, -1.0
    for _ in range(8):
        colour = rng.integers(0, 256, size=3)
        distance = float(np.percentile(np.linalg.norm(under.astype(np.float32) - colour, axis=1), 10))
        if distance > best_distance:
            best, best_distance = colour, distance
        if distance >= 80:
            break
    assert best is not None  # the first draw is always farther than -1
    return best.astype(np.uint8)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, H, W)`` float32 in the model's input space ([-1, 1])."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


#: Per variant: the architecture, the weights and card resources, default training images and epochs.
_VARIANT_SETUP: dict[str, tuple[Callable[[], nn.Module], str, str, int, int]] = {
    "shapes": (ShapesCNN, WEIGHTS_NAME, CARD_NAME, 6000, 6),
    "clutter": (ClutterCNN, CLUTTER_WEIGHTS_NAME, CLUTTER_CARD_NAME, TRAIN_COUNT_CLUTTER, EPOCHS_CLUTTER),
    "planted": (
        lambda: ShapesCNN(width=16),
        PLANTED_WEIGHTS_NAME,
        PLANTED_CARD_NAME,
        TRAIN_COUNT_PLANTED,
        EPOCHS_PLANTED,
    ),
}


def train(
    out_dir: Path,
    *,
    variant: str = "shapes",
    train_count: int | None = None,
    test_count: int = 1000,
    epochs: int | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Generate ``variant``'s data, train its CNN deterministically (CPU, fixed seeds) and write the
    weights (state_dict, e.g. ``synthetic_shapes_cnn.pt``) and the ``.json`` card into ``out_dir``;
    returns the card. ``train_count`` and ``epochs`` default to the variant's recipe
    (:data:`_VARIANT_SETUP`)."""
    architecture, weights_name, card_name, default_count, default_epochs = _VARIANT_SETUP[variant]
    train_count = train_count or default_count
    epochs = epochs or default_epochs
    started = time.perf_counter()
    torch.manual_seed(0)
    train_data = generate(train_count, TRAIN_SEED, variant)
    test_data = generate(test_count, TEST_SEED, variant)
    inputs, labels = to_tensor(train_data.images), torch.from_numpy(train_data.labels)
    model = architecture()
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
            if torch.rand((), generator=generator) < 0.5 and variant != "planted":  # the marker keeps its corner
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
        "variant": variant,
        "architecture": type(model).__name__,
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
    if variant == "planted":
        card.update(planted_card(model, test_data))
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out_dir / Path(weights_name).name)
    (out_dir / Path(card_name).name).write_text(json.dumps(card, indent=2) + "\n")
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


def planted_card(model: nn.Module, data: ShapesData) -> dict:
    """How much a model trained on the planted set relies on the marker, measured on ``data`` (a planted
    set): accuracy on the marked and unmarked images of the planted class, and the share of the other
    classes' images it calls the planted class once the marker is drawn on them (the shortcut)."""
    if data.marked is None:
        raise ValueError("planted_card needs a planted set (ShapesData.marked), not the shapes or clutter set")
    marked = data.marked
    planted = data.labels == PLANTED_CLASS
    others = ~planted
    stamped = np.stack([draw_marker(image, *MARKER_CORNER) for image in data.images[others]])
    with torch.no_grad():
        model.eval()
        stamped_predictions = model(to_tensor(stamped)).argmax(1).numpy()
    return {
        "planted_class": CLASSES[PLANTED_CLASS],
        "planted_share": PLANTED_SHARE,
        "accuracy_marked": _subset_accuracy(model, data, planted & marked),
        "accuracy_unmarked_planted_class": _subset_accuracy(model, data, planted & ~marked),
        "others_called_planted_with_marker": float((stamped_predictions == PLANTED_CLASS).mean()),
        "others_called_planted_without_marker": 1.0 - _subset_accuracy(model, data, others, PLANTED_CLASS),
    }


def _subset_accuracy(model: nn.Module, data: ShapesData, chosen: np.ndarray, other_than: int | None = None) -> float:
    """Accuracy on the ``chosen`` images; with ``other_than``: the share *not* predicted as that class."""
    with torch.no_grad():
        predictions = model(to_tensor(data.images[chosen])).argmax(1).numpy()
    if other_than is not None:
        return float((predictions != other_than).mean())
    return float((predictions == data.labels[chosen]).mean())


def load_shapes_model(variant: str = "shapes"):
    """The shipped model of ``variant`` (:func:`engine.models.bundled.load_bundled`)."""
    return load_bundled(variant)


def main(argv: list[str] | None = None) -> int:
    import argparse

    from engine.models.resources import resource_path

    parser = argparse.ArgumentParser(prog="python -m engine.evaluation.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["train"])
    parser.add_argument("--variant", choices=list(MODEL_NAMES), default="shapes", help="data set (default shapes)")
    parser.add_argument("--out", type=Path, default=resource_path("models"))
    parser.add_argument(
        "--epochs", type=int, help=f"default: 6 (shapes), {EPOCHS_CLUTTER} (clutter), {EPOCHS_PLANTED} (planted)"
    )
    parser.add_argument(
        "--train-count",
        type=int,
        help=f"default: 6000 (shapes), {TRAIN_COUNT_CLUTTER} (clutter), {TRAIN_COUNT_PLANTED} (planted)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    card = train(args.out, variant=args.variant, train_count=args.train_count, epochs=args.epochs)
    print(json.dumps(card, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
