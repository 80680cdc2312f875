"""Export one explained item: masks (``.npy``, 8- and 16-bit PNG), the evidence heat map, an overlay,
the explanation image ``e`` and a JSON summary -- all or nothing, never overwriting without consent --
and the round-trip check: the exported 8-bit explanation, read back and fed to the model, must score
like ``e`` did."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from engine.colormaps import DEFAULT_SCALE, DisplayRange, apply_colormap, display_range
from engine.core.explanation import Explanation
from engine.errors import ExportError
from engine.models.loading import ClassifierModel, sha256_of

from .files import npy_bytes, png_bytes, readable_name, write_atomic
from .record import ExplanationRecord, score_pixels

#: File name suffixes of one export, by kind (``STEM + suffix``).
SUFFIXES = {
    "mask": "_mask.npy",
    "mask_mean": "_mask_mean.npy",
    "mask_png8": "_mask8.png",
    "mask_png16": "_mask16.png",
    "evidence": "_evidence.png",
    "overlay": "_overlay.png",
    "explanation": "_explanation.png",
    "summary": ".json",
}
#: The heat map's opacity in an overlay composed here (the viewer's default).
OVERLAY_OPACITY = 0.7


def planned_paths(out_dir: Path, stem: str) -> dict[str, Path]:
    """The files :func:`export_record` writes for ``stem``."""
    return {kind: Path(out_dir) / f"{stem}{suffix}" for kind, suffix in SUFFIXES.items()}


def existing_files(out_dir: Path, stem: str) -> list[Path]:
    return [path for path in planned_paths(out_dir, stem).values() if path.exists()]


def export_record(
    record: ExplanationRecord,
    out_dir: Path,
    stem: str,
    *,
    model: ClassifierModel | None = None,
    colormap: str = "inferno",
    scale: str = DEFAULT_SCALE,
    overlay: np.ndarray | None = None,
    extra: dict | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write every file of one record; returns them by kind.

    Parameters
    ----------
    model
        When given, the explanation PNG is read back and re-scored; the value lands in
        ``record.prob_rescored`` and the JSON.
    colormap, scale
        Style of the heat map PNG and a composed overlay: the colormap and the display scale
        (:func:`engine.colormaps.display_range`, robust by default). The range used is written to the JSON
        (``value_range``, ``scale``, ``scale_text``); the mask files are the unscaled data.
    overlay
        ``(H, W, 3)`` uint8 picture to save as the overlay (the GUI passes exactly what it shows);
        ``None`` composes the heat map over the model's input at :data:`OVERLAY_OPACITY`.
    extra
        More JSON fields (e.g. the app version).

    Raises
    ------
    ExportError
        Existing files without ``overwrite``, or a folder that cannot be written (full, read-only): then
        no file of this export is left, old or new.
    """
    paths = planned_paths(out_dir, stem)
    clashes = [p for p in paths.values() if p.exists()]
    if clashes and not overwrite:
        names = ", ".join(p.name for p in clashes[:4]) + (" ..." if len(clashes) > 4 else "")
        raise ExportError(
            f"{len(clashes)} file(s) already exist in {out_dir}: {names}; choose another folder or allow overwriting"
        )
    shown = display_range(record.evidence, scale)
    heat = apply_colormap(record.evidence, colormap, shown.low, shown.high)
    if overlay is None:
        overlay = compose_overlay(record.input_rgb, record.evidence, colormap, shown)
    mean_mask = record.mask.mean(axis=0).astype(np.float32)
    contents = {
        "mask": npy_bytes(record.mask.astype(np.float32)),
        "mask_mean": npy_bytes(mean_mask),
        "mask_png8": png_bytes(np.round(mean_mask * 255).astype(np.uint8)),
        "mask_png16": png_bytes(np.round(mean_mask * 65535).astype("<u2")),
        "evidence": png_bytes(heat),
        "overlay": png_bytes(overlay),
        "explanation": png_bytes(record.explanation_rgb),
    }
    if model is not None:
        record.prob_rescored = rescore_png(model, contents["explanation"], record.target)
    summary = {
        **record.metadata(),
        "colormap": colormap,
        "value_range": [shown.low, shown.high],
        "scale": shown.scale,
        "scale_text": shown.text(),
        **(extra or {}),
        "files": {kind: path.name for kind, path in paths.items() if kind != "summary"},
        "files_sha256": {kind: hashlib.sha256(data).hexdigest() for kind, data in contents.items()},
    }
    contents["summary"] = (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    # The summary is the item's completion mark: an old one goes first and the new one lands last, so a
    # process killed in between leaves an item without a summary (redone on resume), never an old summary
    # beside new files. complete_export() checks the files against the hashes it lists.
    if paths["summary"].exists():
        try:
            paths["summary"].unlink()
        except OSError as exc:
            raise ExportError(f"cannot replace {paths['summary']}: {exc.strerror or exc}") from exc
    write_all_or_nothing({paths[kind]: data for kind, data in contents.items() if kind != "summary"})
    write_all_or_nothing({paths["summary"]: contents["summary"]})
    return paths


def complete_export(out_dir: Path, stem: str) -> dict | None:
    """The summary of a finished export of ``stem`` in ``out_dir`` whose files are all there with the
    contents it lists (``files_sha256``), else ``None`` (missing, unreadable, or files from another run).
    Summaries written before the hashes existed are trusted if every listed file exists."""
    paths = planned_paths(out_dir, stem)
    try:
        summary = json.loads(paths["summary"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict):
        return None
    hashes = summary.get("files_sha256")
    for kind, path in paths.items():
        if kind == "summary":
            continue
        try:
            if isinstance(hashes, dict):
                if hashlib.sha256(path.read_bytes()).hexdigest() != hashes.get(kind):
                    return None
            elif not path.is_file():
                return None
        except OSError:
            return None
    return summary


def compose_overlay(
    pixels: np.ndarray,
    evidence: np.ndarray,
    colormap: str = "inferno",
    shown: DisplayRange | None = None,
    opacity: float = OVERLAY_OPACITY,
) -> np.ndarray:
    """The heat map of ``evidence`` ``(h, w)`` (0..1) over ``pixels`` ``(h, w, 3)`` uint8 like the viewer's
    normal blend: coloured on ``shown`` (``None``: the default scale of
    :func:`engine.colormaps.display_range`), transparent at the bottom of the range, full ``opacity`` from
    a tenth of it up."""
    shown = shown or display_range(evidence)
    low, high = shown.low, shown.high
    scaled = np.clip((evidence.astype(np.float32) - low) / (high - low), 0.0, 1.0)
    alpha = (np.clip(scaled / 0.1, 0.0, 1.0) * opacity)[..., None]
    heat = apply_colormap(evidence, colormap, low, high).astype(np.float32)
    return np.clip(np.round(alpha * heat + (1.0 - alpha) * pixels.astype(np.float32)), 0, 255).astype(np.uint8)


def rescore_png(model: ClassifierModel, png: bytes | Path, target: int) -> float:
    """Target probability of ``model`` on a model-resolution explanation PNG read back from disk or
    bytes (no resize or crop: it already is the model's input)."""
    source = io.BytesIO(png) if isinstance(png, bytes) else png
    with Image.open(source) as image:
        pixels = np.asarray(image.convert("RGB"))
    if pixels.shape[:2] != tuple(model.input_size):
        raise ExportError(
            f"the explanation PNG is {pixels.shape[1]}x{pixels.shape[0]}, the model takes "
            f"{model.input_size[1]}x{model.input_size[0]}"
        )
    return score_pixels(model, pixels, target)


def write_all_or_nothing(files: dict[Path, bytes]) -> None:
    """:func:`engine.results.files.write_atomic` with a clear :class:`ExportError`: all files or none of them."""
    try:
        write_atomic(files)
    except OSError as exc:
        where = Path(next(iter(files))).parent if files else "?"
        raise ExportError(f"cannot write to {where}: {exc.strerror or exc}") from exc


def export_explained(
    result: Explanation,
    index: int,
    model: ClassifierModel,
    image: Path,
    out_dir: Path,
    stem: str,
    *,
    colormap: str = "inferno",
    scale: str = DEFAULT_SCALE,
    app_version: str = "",
) -> tuple[ExplanationRecord, dict[str, Path]]:
    """Item ``index`` of ``result``, explained from the photo file ``image``: its record (with the file's
    name, path and SHA-256) and its files in ``out_dir`` named ``stem`` (:func:`export_record`, replacing
    earlier ones). The one write path of ``fgvis explain`` and of batches."""
    record = ExplanationRecord.from_explanation(
        result,
        index,
        model,
        image_name=readable_name(image.name),
        image_path=readable_name(str(image.resolve())),
        image_sha256=sha256_of(image),
    )
    files = export_record(
        record,
        out_dir,
        stem,
        model=model,
        colormap=colormap,
        scale=scale,
        overwrite=True,
        extra={"app_version": app_version},
    )
    return record, files
