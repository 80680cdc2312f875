"""Explain every image of a folder: per-image exports, an index (CSV, JSON, HTML), resumable, and
never stopped by a bad file (those are listed at the end with the reason)."""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .colormaps import DEFAULT_SCALE
from .errors import ConfigError, FGVisError, ImageLoadError
from .export import export_record, planned_paths, write_all_or_nothing
from .fgvis import explain
from .images import load_image
from .models import ClassifierModel, sha256_of
from .record import ExplanationRecord
from .report import index_report
from .types import FGVisConfig, StepState

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
INDEX_COLUMNS = (
    "image", "target", "target_label", "game", "defense", "prob_original", "prob_explanation", "prob_rescored",
    "top1_explanation_label", "mask_mean", "steps", "goal_met", "survives_8bit", "cancelled", "summary",
)  # fmt: skip


@dataclass
class BatchProgress:
    """Reported after each item is written or skipped (``done`` of ``total`` items)."""

    done: int
    total: int
    item: str
    state: str  # "written", "skipped (already done)", "failed: ...", "cancelled"


@dataclass
class BatchSummary:
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    cancelled: bool = False
    index_files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # e.g. a batch split after CUDA ran out of memory


def image_files(folder: Path) -> list[Path]:
    """The images directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def images_in(folder: Path) -> list[Path]:
    """:func:`image_files` of a folder the user named to measure on: a :class:`ConfigError` if it is not a
    folder or holds no images."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder")
    paths = image_files(folder)
    if not paths:
        raise ConfigError(f"no images in {folder}")
    return paths


def parse_targets(spec: str | Sequence) -> int | list:
    """``"top1"``/``"top3"``/``"topK"`` -> K; ``"3,espresso"`` or a list -> the listed classes."""
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text.startswith("top") and text[3:].isdigit() and int(text[3:]) >= 1:
            return int(text[3:])
        return [part.strip() for part in spec.split(",") if part.strip()]
    return list(spec)


def run_batch(
    model: ClassifierModel, inputs: Path | Sequence[Path], out_dir: Path, *, targets: str | Sequence = "top1",
    games: Sequence[str] = ("preserve",), defense: bool = True, config: FGVisConfig | None = None,
    batch_size: int = 8, overwrite: bool = False, colormap: str = "inferno", scale: str = DEFAULT_SCALE,
    app_version: str = "", on_progress: Callable[[BatchProgress], None] | None = None,
    on_step: Callable[[StepState], None] | None = None, should_stop: Callable[[], bool] | None = None,
) -> BatchSummary:  # fmt: skip
    """Explain each image for each target and game, ``batch_size`` items per optimisation.

    An item whose summary JSON already exists (and was not cancelled) is skipped, so an interrupted run
    resumes where it stopped; ``overwrite`` redoes everything. Files that cannot be read are listed in
    ``BatchSummary.failures`` and the run goes on. The index (``index.csv``, ``index.json``,
    ``index.html``) lists every finished item in ``out_dir``.
    """
    config = config or FGVisConfig()
    out_dir = Path(out_dir)
    paths = image_files(inputs) if isinstance(inputs, (str, Path)) else [Path(p) for p in inputs]
    wanted = parse_targets(targets)
    if not isinstance(wanted, int):
        wanted = [model.resolve_target(t) for t in wanted]  # a bad class name stops the run before it starts
    summary = BatchSummary()
    stop = should_stop or (lambda: False)
    stems = unique_stems(paths)
    items = []  # (path, stem, pixels, target index)
    for path, stem in zip(paths, stems, strict=True):
        try:
            pixels = np.asarray(load_image(path).convert("RGB"))
            chosen = _targets_for(model, pixels, wanted)
        except (ImageLoadError, FGVisError) as exc:
            summary.failures.append((path.name, str(exc)))
            continue
        items.extend((path, stem, pixels, target) for target in chosen)
    total = len(items) * len(games)
    done = 0

    def report(item: str, state: str) -> None:
        if on_progress is not None:
            on_progress(BatchProgress(done, total, item, state))

    for game in games:
        pending = []
        for path, stem, pixels, target in items:
            item_stem = f"{stem}_{target}_{game}"
            if not overwrite and _finished(out_dir, item_stem):
                done += 1
                summary.skipped.append(item_stem)
                report(item_stem, "skipped (already done)")
            else:
                pending.append((path, item_stem, pixels, target))
        for start in range(0, len(pending), max(1, batch_size)):
            if stop():
                summary.cancelled = True
                break
            chunk = pending[start : start + batch_size]
            try:
                result = explain(model, [c[2] for c in chunk], [c[3] for c in chunk], game=game, defense=defense,
                                 config=config, on_step=on_step, should_stop=stop)  # fmt: skip
            except FGVisError as exc:
                for path, item_stem, _, _ in chunk:
                    done += 1
                    summary.failures.append((path.name, str(exc)))
                    report(item_stem, f"failed: {exc}")
                continue
            summary.warnings.extend(result.warnings)
            for index, (path, item_stem, _, _) in enumerate(chunk):
                record = ExplanationRecord.from_explanation(
                    result, index, model, image_name=path.name, image_path=str(path.resolve()),
                    image_sha256=sha256_of(path),
                )  # fmt: skip
                export_record(record, out_dir, item_stem, model=model, colormap=colormap, scale=scale,
                              overwrite=True, extra={"app_version": app_version})  # fmt: skip
                done += 1
                if result.cancelled:
                    report(item_stem, "cancelled")
                else:
                    summary.written.append(item_stem)
                    report(item_stem, "written")
            if result.cancelled:
                summary.cancelled = True
                break
        if summary.cancelled:
            break
    summary.index_files = write_index(out_dir)
    return summary


def write_index(out_dir: Path) -> dict[str, Path]:
    """(Re)write ``index.csv``, ``index.json`` and ``index.html`` from every summary JSON in ``out_dir``."""
    out_dir = Path(out_dir)
    rows = []
    for summary_path in sorted(out_dir.glob("*.json")):
        if summary_path.name.startswith("index"):
            continue
        try:
            data = json.loads(summary_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or "prob_explanation" not in data:
            continue
        data["summary"] = summary_path.name
        rows.append(data)
    csv_buffer = io.StringIO()
    writer = csv.DictWriter(csv_buffer, fieldnames=INDEX_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    for row in rows:
        evidence = out_dir / row.get("files", {}).get("overlay", "")
        row["thumbnail"] = _thumbnail(evidence) if evidence.is_file() else None
    html = index_report(rows)
    for row in rows:
        row.pop("thumbnail")
    files = {"csv": out_dir / "index.csv", "json": out_dir / "index.json", "html": out_dir / "index.html"}
    write_all_or_nothing({
        files["csv"]: csv_buffer.getvalue().encode("utf-8"),
        files["json"]: (json.dumps(rows, indent=1, ensure_ascii=False) + "\n").encode("utf-8"),
        files["html"]: html.encode("utf-8"),
    })  # fmt: skip
    return files


def _finished(out_dir: Path, stem: str) -> bool:
    summary = planned_paths(out_dir, stem)["summary"]
    try:
        return not json.loads(summary.read_text(encoding="utf-8")).get("cancelled", True)
    except (OSError, ValueError, AttributeError):
        return False


def _targets_for(model: ClassifierModel, pixels: np.ndarray, wanted: int | list) -> list[int]:
    if isinstance(wanted, int):
        return [p.index for p in model.predict(pixels, k=wanted)]
    return list(wanted)


def _thumbnail(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image.thumbnail((96, 96))
        return np.asarray(image.convert("RGB"))


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """File stems made unique (``a``, ``a_2``...) so outputs of same-named files never collide."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        count = seen.get(path.stem, 0)
        seen[path.stem] = count + 1
        stems.append(path.stem if count == 0 else f"{path.stem}_{count + 1}")
    return stems
