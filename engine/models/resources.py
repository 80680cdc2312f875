"""Location of the bundled read-only resources (labels, sample photos), from source or frozen."""

from __future__ import annotations

import sys
from pathlib import Path

from engine.errors import FGVisError


def resource_path(*parts: str) -> Path:
    """Path of a file under ``resources/``.

    Works from a source checkout or editable install (``resources/`` beside ``engine/``) and from a
    PyInstaller bundle (``resources/`` inside ``sys._MEIPASS``).
    """
    frozen_root = getattr(sys, "_MEIPASS", None)
    root = Path(frozen_root) if frozen_root else Path(__file__).resolve().parents[2]
    return root.joinpath("resources", *parts)


def required_resource(*parts: str) -> Path:
    """:func:`resource_path`, failing clearly when the file is not there (a broken install or bundle)."""
    path = resource_path(*parts)
    if not path.exists():
        raise FGVisError(f"a bundled resource is missing: {path} (reinstall FGVis Studio or rebuild the bundle)")
    return path


def sample_images() -> list[Path]:
    """The bundled sample photographs, sorted by name."""
    return sorted(required_resource("samples").glob("*.jpg"))


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in index order."""
    text = required_resource("imagenet_classes.txt").read_text(encoding="utf-8")
    labels = [line for line in text.splitlines() if line]
    if len(labels) != 1000:
        raise RuntimeError(f"{resource_path('imagenet_classes.txt')} holds {len(labels)} labels, not 1000")
    return labels
