"""Dataset review of a batch results folder (``fgvis batch``): read the evidence maps per class, run the
analysis of :mod:`engine.analysis.core` on each class, and save it beside the batch (``analysis/``: one JSON
file, one ``.npz`` of arrays, the reviewer's notes in their own JSON file) so that it can be read back.

A results folder is a folder with ``index.json`` (written by ``fgvis batch``) or, without one, export
summaries (``*.json`` naming their files, as ``fgvis explain`` writes them). Each done item of the chosen game
contributes its mask file (``*_mask.npy``, per channel; ``*_mask_mean.npy`` when that is missing): the
evidence is ``m`` for preservation and ``1 - m`` for deletion. Items whose mask is missing, unreadable or not
a mask are skipped and listed with the reason (:attr:`DatasetAnalysis.skipped`), as are the batch's failed
and cancelled items.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import AnalysisCancelled, DatasetAnalysisError, FGVisError
from engine.models.inputs import regular_file
from engine.results.export import write_all_or_nothing
from engine.results.files import readable_name

from . import core
from .core import AnalysisError, ClusterStats, MapClusters, ReducedMaps

#: Where ``analyze`` saves by default (inside the results folder), and the files of a saved analysis.
ANALYSIS_FOLDER = "analysis"
ANALYSIS_FILE, ARRAYS_FILE, NOTES_FILE, REPORT_FILE = "analysis.json", "analysis.npz", "notes.json", "report.html"
FORMAT, VERSION = "fgvis-dataset-analysis", 1
GAMES = ("preserve", "delete")
#: Bounds on what a results folder may declare before anything is allocated for it.
MAX_ITEMS = 1_000_000
MAX_MAP_PIXELS = 4096 * 4096
MAX_CHANNELS = 4
#: Maps read and reduced together (memory: this many full-size maps at a time).
CHUNK = 256


@dataclass
class MapItem:
    """One explained item of the batch: ``stem`` of its files, ``image`` name, class ``target`` and
    ``label``, ``game``, its export ``summary`` file name and ``files`` (kind -> file name, as the summary
    lists them), the photo's path and the model's ``crop_box`` on it, and its numbers."""

    stem: str
    image: str
    target: int
    label: str
    game: str
    summary: str
    files: dict[str, str]
    image_path: str | None = None
    crop_box: list[float] | None = None
    prob_original: float | None = None
    prob_explanation: float | None = None
    mask_mean: float | None = None

    def to_json(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict) -> MapItem:
        return cls(
            stem=str(data["stem"]),
            image=str(data["image"]),
            target=int(data["target"]),
            label=str(data["label"]),
            game=str(data["game"]),
            summary=str(data["summary"]),
            files={str(k): str(v) for k, v in dict(data.get("files") or {}).items()},
            image_path=_optional_text(data.get("image_path")),
            crop_box=_box(data.get("crop_box")),
            prob_original=_optional_number(data.get("prob_original")),
            prob_explanation=_optional_number(data.get("prob_explanation")),
            mask_mean=_optional_number(data.get("mask_mean")),
        )


@dataclass
class ClassAnalysis:
    """The analysis of one class: its ``items`` (in the order of the arrays) and the clusters (``None``
    with a ``message`` when the class could not be analysed, e.g. fewer maps than clusters asked for)."""

    target: int
    label: str
    items: list[MapItem]
    result: MapClusters | None = None
    message: str = ""

    @property
    def key(self) -> str:
        return f"class{self.target}"

    @property
    def flagged(self) -> list[ClusterStats]:
        return [cluster for cluster in self.result.clusters if cluster.flagged] if self.result else []

    def ordered_clusters(self) -> list[ClusterStats]:
        """Flagged clusters first, then by size."""
        if self.result is None:
            return []
        return sorted(self.result.clusters, key=lambda c: (not c.flagged, -c.size, c.index))


@dataclass
class DatasetAnalysis:
    """A dataset review: the ``results_dir`` analysed, the ``game``, the ``settings``, one
    :class:`ClassAnalysis` per class, the ``skipped`` items (``{"item", "image", "reason"}``), when it was
    ``created``, the ``folder`` it is saved in (``None`` until saved) and the reviewer's ``notes`` per
    cluster (:meth:`note`)."""

    results_dir: Path
    game: str
    settings: dict
    classes: list[ClassAnalysis]
    skipped: list[dict] = field(default_factory=list)
    created: str = ""
    folder: Path | None = None
    notes: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def class_for(self, target: int) -> ClassAnalysis:
        for entry in self.classes:
            if entry.target == target:
                return entry
        raise KeyError(target)

    def note(self, target: int, cluster: int) -> str:
        return self.notes.get(note_key(target, cluster), "")

    def set_note(self, target: int, cluster: int, text: str) -> None:
        key = note_key(target, cluster)
        if text.strip():
            self.notes[key] = text
        else:
            self.notes.pop(key, None)

    def file_of(self, item: MapItem, kind: str) -> Path | None:
        """The batch file of ``kind`` (``"overlay"``, ``"explanation"``, ``"mask"``...) of ``item``, when the
        summary listed one."""
        name = item.files.get(kind)
        return self.results_dir / name if name and _plain_name(name) else None


def note_key(target: int, cluster: int) -> str:
    return f"{int(target)}:{int(cluster)}"


def join_notes(into: dict[str, str], notes: dict[str, str]) -> bool:
    """Add ``notes`` (keyed like :func:`note_key`) to ``into``, losing nothing: a cluster without a note
    takes the given one; where both have different text, both are kept (``into``'s first). Returns whether
    ``into`` changed."""
    changed = False
    for key, text in notes.items():
        own = into.get(key, "")
        if not text or text in own:
            continue
        into[key] = text if not own or own in text else f"{own}\n\n{text}"
        changed = True
    return changed


# ---------------------------------------------------------------------------------------------- reading a batch
def read_items(results_dir: Path, game: str = "preserve") -> tuple[list[MapItem], list[dict]]:
    """The done items of ``game`` in a results folder and the skipped ones (failed or cancelled in the batch,
    or summaries that are not readable).

    Raises
    ------
    DatasetAnalysisError
        Not a folder, an empty folder, a folder that is not a batch result, an unreadable ``index.json``."""
    results_dir = Path(results_dir)
    if game not in GAMES:
        raise DatasetAnalysisError(f"unknown game {game!r}: choose preserve or delete")
    if not results_dir.is_dir():
        raise DatasetAnalysisError(f"{results_dir} is not a folder: give the folder a batch wrote its results to")
    try:
        entries = [p for p in results_dir.iterdir() if not p.name.startswith(".")]
    except OSError as exc:
        raise DatasetAnalysisError(f"{results_dir} cannot be read: {exc.strerror or exc}") from None
    if not entries:
        raise DatasetAnalysisError(
            f"{results_dir} is empty: there are no batch results to analyse (run fgvis batch IMAGES --out FOLDER first)"
        )
    index = results_dir / "index.json"
    if index.exists():
        rows = _read_index(index)
    else:
        rows = _summaries(results_dir)
        if not rows:
            raise DatasetAnalysisError(
                f"{results_dir} is not a batch result: it has no index.json (written by fgvis batch) and no result "
                "summaries (.json files listing their mask files)"
            )
    items, skipped = [], []
    for row in rows:
        status = row.get("status", "done")
        name = str(row.get("image") or row.get("summary") or "?")
        if status == "ignored" or (row.get("game") not in (None, game)):
            continue
        if status == "failed":
            skipped.append(_skip(row.get("item"), name, f"not explained by the batch: {row.get('reason') or '?'}"))
            continue
        if status == "cancelled" or row.get("cancelled"):
            skipped.append(_skip(_stem(row), name, "cancelled in the batch (a partial result)"))
            continue
        try:
            items.append(_item(row, game))
        except (KeyError, TypeError, ValueError) as exc:
            skipped.append(_skip(_stem(row), name, f"its summary is not a result summary ({exc})"))
    items.sort(key=lambda item: (item.target, item.stem))
    return items, skipped


def _read_index(path: Path) -> list[dict]:
    try:
        regular_file(path, "the batch index (index.json)", DatasetAnalysisError)
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetAnalysisError(
            f"{path} cannot be read ({exc}): run fgvis batch on the folder again to rewrite the index"
        ) from None
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise DatasetAnalysisError(f"{path} is not a batch index (a list of rows): run fgvis batch again to rewrite it")
    if len(data) > MAX_ITEMS:
        raise DatasetAnalysisError(f"{path} lists {len(data):,} rows, more than the limit of {MAX_ITEMS:,}")
    return data


def _summaries(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("*.json")):
        if path.name in ("index.json", "failures.json"):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("files"), dict) and "prob_explanation" in data:
            data["summary"] = path.name
            data["status"] = "cancelled" if data.get("cancelled") else "done"
            rows.append(data)
        if len(rows) > MAX_ITEMS:
            raise DatasetAnalysisError(f"{folder} holds more than {MAX_ITEMS:,} result summaries")
    return rows


def _item(row: dict, game: str) -> MapItem:
    files = row["files"]
    if not isinstance(files, dict):
        raise TypeError("'files' is not a table of file names")
    target = row["target"]
    if isinstance(target, bool) or not isinstance(target, int):
        raise TypeError(f"the class index is {target!r}")
    return MapItem(
        stem=_stem(row) or str(row["summary"]),
        image=readable_name(str(row.get("image") or "?")),
        target=target,
        label=readable_name(str(row.get("target_label") or f"class {target}")),
        game=game,
        summary=str(row["summary"]),
        files={str(k): str(v) for k, v in files.items()},
        image_path=_optional_text(row.get("image_path")),
        crop_box=_box(row.get("crop_box")),
        prob_original=_optional_number(row.get("prob_original")),
        prob_explanation=_optional_number(row.get("prob_explanation")),
        mask_mean=_optional_number(row.get("mask_mean")),
    )


def _stem(row: dict) -> str | None:
    summary = row.get("summary")
    return str(summary).removesuffix(".json") if summary else None


def _skip(item, image: str, reason: str) -> dict:
    return {"item": item, "image": readable_name(str(image)), "reason": reason}


def read_evidence(results_dir: Path, item: MapItem) -> np.ndarray:
    """The evidence map of ``item``: ``(C, H, W)`` float32 in 0..1 (``m`` or ``1 - m``).

    Raises
    ------
    DatasetAnalysisError
        The mask file is missing, unreadable, too large, or not a mask."""
    for kind in ("mask", "mask_mean"):
        name = item.files.get(kind)
        if name and _plain_name(name) and (Path(results_dir) / name).exists():
            break
    else:
        listed = item.files.get("mask") or item.files.get("mask_mean")
        raise DatasetAnalysisError(f"its mask file {listed or '(none listed)'} is missing")
    mask = _read_mask(Path(results_dir) / name)
    return mask if item.game == "preserve" else 1.0 - mask


def _read_mask(path: Path) -> np.ndarray:
    regular_file(path, "a mask file (.npy)", DatasetAnalysisError)
    try:
        with open(path, "rb") as stream:
            version = np.lib.format.read_magic(stream)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = reader(stream)
            if dtype.hasobject or dtype.kind not in "fui":
                raise DatasetAnalysisError(f"{path.name} holds {dtype} values, not a mask's numbers")
            if len(shape) not in (2, 3) or (len(shape) == 3 and not 1 <= shape[0] <= MAX_CHANNELS):
                raise DatasetAnalysisError(f"{path.name} is an array of shape {shape}, not a mask (C, H, W) or (H, W)")
            if math.prod(shape[-2:]) > MAX_MAP_PIXELS or min(shape[-2:]) < 1:
                raise DatasetAnalysisError(f"{path.name} is {shape[-1]}x{shape[-2]}: not a mask size this reads")
            stream.seek(0)
            mask = np.load(stream, allow_pickle=False)
    except DatasetAnalysisError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetAnalysisError(f"{path.name} cannot be read as a mask ({exc})") from None
    mask = np.asarray(mask, np.float32)
    if mask.ndim == 2:
        mask = mask[None]
    if not np.isfinite(mask).all():
        raise DatasetAnalysisError(f"{path.name} holds values that are not finite numbers")
    if mask.min() < -1e-3 or mask.max() > 1 + 1e-3:
        raise DatasetAnalysisError(f"{path.name} holds values outside 0..1 ({mask.min():.3g}..{mask.max():.3g})")
    return np.clip(mask, 0.0, 1.0)


def _plain_name(name: str) -> bool:
    """A file name inside the results folder: no folders, not hidden, no parent references."""
    return bool(name) and Path(name).name == name and name not in (".", "..") and "\\" not in name


# ---------------------------------------------------------------------------------------------- analysis
def analyze(
    results_dir: str | Path,
    *,
    game: str = "preserve",
    classes: Sequence[int | str] | None = None,
    clusters: int | str = "auto",
    channels: bool = False,
    feature_size: int = core.FEATURE_SIZE,
    neighbours: int | None = None,
    max_clusters: int = core.MAX_CLUSTERS,
    embedding: str = "tsne",
    seed: int = 0,
    out_dir: str | Path | None = None,
    save: bool = True,
    log: Callable[[str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> DatasetAnalysis:
    """Review the explanations of a batch results folder class by class (SpRAy).

    Parameters
    ----------
    results_dir
        A ``fgvis batch`` results folder.
    game
        Whose maps: ``"preserve"`` (evidence ``m``) or ``"delete"`` (evidence ``1 - m``).
    classes
        Class indices or names (as the batch labels them) to analyse; ``None``: every class in the folder.
    clusters, neighbours, max_clusters, embedding, seed
        See :func:`engine.analysis.core.cluster_reduced`.
    channels, feature_size
        See :func:`engine.analysis.core.reduce_maps`.
    out_dir, save
        Saved to ``out_dir`` (default ``results_dir/analysis``) unless ``save`` is false.
    log
        Called with progress messages.
    cancelled
        Asked at every progress message (between maps read in chunks and between the stages of each
        class's clustering); when it returns true the analysis stops with :class:`AnalysisCancelled`.

    Raises
    ------
    DatasetAnalysisError
        The folder cannot be analysed (see :func:`read_items`), a class asked for is not in it, no class
        could be analysed, or the analysis cannot be saved. A class that cannot be analysed while others can
        gets a ``message`` instead; skipped items are listed in ``skipped``. :class:`AnalysisCancelled`
        when ``cancelled`` said so.
    """
    started = time.perf_counter()

    def say(message: str) -> None:
        if cancelled is not None and cancelled():
            raise AnalysisCancelled("the analysis was cancelled; nothing was saved")
        if log is not None:
            log(message)

    results_dir = Path(results_dir)
    try:
        core._wanted_clusters(clusters, max_clusters)
        if embedding not in core.EMBEDDINGS:
            raise AnalysisError(f"unknown embedding {embedding!r}: choose from {', '.join(core.EMBEDDINGS)}")
        if not 2 <= int(feature_size) <= 256:
            raise AnalysisError(f"the feature size must be from 2 to 256 pixels, not {feature_size}")
    except AnalysisError as exc:
        raise DatasetAnalysisError(str(exc)) from None
    items, skipped = read_items(results_dir, game)
    if not items:
        other = "delete" if game == "preserve" else "preserve"
        hint = (
            f" (it holds {other} results: analyse those with game {other})" if read_items(results_dir, other)[0] else ""
        )
        raise DatasetAnalysisError(f"no finished {game} results in {results_dir}{hint}")
    by_class: dict[int, list[MapItem]] = {}
    for item in items:
        by_class.setdefault(item.target, []).append(item)
    labels = {target: group[0].label for target, group in by_class.items()}
    chosen = _choose_classes(classes, labels)
    analysed: list[ClassAnalysis] = []
    for number, target in enumerate(chosen, 1):
        group = by_class[target]
        say(f"class {number}/{len(chosen)} {labels[target]!r}: reading {len(group)} maps")
        reduced, kept, lost = _reduce_class(results_dir, group, feature_size, channels, say)
        skipped.extend(lost)
        entry = ClassAnalysis(target, labels[target], kept)
        if not kept:
            entry.message = "no readable evidence maps (every mask file of this class was skipped)"
        else:

            def class_log(message: str, label: str = labels[target]) -> None:
                say(f"{label!r}: {message}")

            try:
                entry.result = core.cluster_reduced(
                    reduced,
                    clusters=clusters,
                    neighbours=neighbours,
                    max_clusters=max_clusters,
                    embedding=embedding,
                    seed=seed,
                    log=class_log,
                )
            except AnalysisError as exc:
                entry.message = f"class {labels[target]!r} ({target}): {exc}"
        if entry.message:
            say(f"not analysed: {entry.message}")
        analysed.append(entry)
    if not any(entry.result is not None for entry in analysed):
        reasons = "; ".join(entry.message for entry in analysed)
        raise DatasetAnalysisError(f"no class could be analysed: {reasons}")
    settings = {
        "game": game,
        "clusters": str(clusters),
        "channels": bool(channels),
        "feature_size": int(feature_size),
        "neighbours": neighbours,
        "max_clusters": int(max_clusters),
        "embedding": embedding,
        "seed": int(seed),
    }
    analysis = DatasetAnalysis(
        results_dir=results_dir,
        game=game,
        settings=settings,
        classes=analysed,
        skipped=skipped,
        created=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        seconds=time.perf_counter() - started,
    )
    if save:
        folder = Path(out_dir) if out_dir is not None else results_dir / ANALYSIS_FOLDER
        say(f"saving to {folder}")
        save_analysis(analysis, folder)
        if log is not None:  # not say(): a cancel that comes now is too late, the analysis is saved
            log(f"saved to {folder}")
    return analysis


def _choose_classes(classes: Sequence[int | str] | None, labels: dict[int, str]) -> list[int]:
    if classes is None:
        return sorted(labels)
    chosen: list[int] = []
    for spec in classes:
        text = str(spec).strip()
        matches = [
            t for t, label in labels.items() if (text.isdecimal() and int(text) == t) or label.lower() == text.lower()
        ]
        if not matches:
            listed = ", ".join(f"{labels[t]} ({t})" for t in sorted(labels)[:20]) + (" ..." if len(labels) > 20 else "")
            raise DatasetAnalysisError(f"class {text!r} has no results in this folder; it has: {listed}")
        chosen.extend(t for t in matches if t not in chosen)
    return chosen


def _reduce_class(results_dir: Path, group: list[MapItem], feature_size: int, channels: bool, say):
    kept, lost, parts = [], [], []
    pending: list[np.ndarray] = []
    pending_items: list[MapItem] = []
    shape: tuple | None = None

    def flush() -> None:
        if pending:
            parts.append(core.reduce_maps(np.stack(pending), feature_size, channels))
            kept.extend(pending_items)
            pending.clear()
            pending_items.clear()

    for number, item in enumerate(group, 1):
        try:
            evidence = read_evidence(results_dir, item)
        except DatasetAnalysisError as exc:
            lost.append(_skip(item.stem, item.image, str(exc)))
            continue
        if shape is None:
            shape = evidence.shape
        if evidence.shape != shape:
            if channels or evidence.shape[-2:] != shape[-2:]:
                lost.append(
                    _skip(
                        item.stem,
                        item.image,
                        f"its map is {'x'.join(map(str, evidence.shape))}, the "
                        f"class's first is {'x'.join(map(str, shape))}",
                    )
                )
                continue
            evidence = np.broadcast_to(evidence.mean(0, keepdims=True), shape)
        pending.append(evidence)
        pending_items.append(item)
        if len(pending) >= CHUNK:
            flush()
        if number % 1000 == 0:
            say(f"  read {number}/{len(group)} maps")
    flush()
    return ReducedMaps.concatenate(parts), kept, lost


# ---------------------------------------------------------------------------------------------- saving, reading
def save_analysis(analysis: DatasetAnalysis, folder: str | Path) -> Path:
    """Write ``analysis.json``, ``analysis.npz`` and ``notes.json`` into ``folder`` (all or nothing) and set
    ``analysis.folder``. Raises :class:`DatasetAnalysisError` when the folder cannot be written."""
    folder = Path(folder)
    document = {
        "format": FORMAT,
        "version": VERSION,
        "results_dir": str(analysis.results_dir),
        "game": analysis.game,
        "settings": analysis.settings,
        "created": analysis.created,
        "seconds": round(analysis.seconds, 3),
        "skipped": analysis.skipped,
        "classes": [_class_json(entry) for entry in analysis.classes],
    }
    arrays: dict[str, np.ndarray] = {}
    for entry in analysis.classes:
        if entry.result is None:
            continue
        result, key = entry.result, entry.key
        arrays.update(
            {
                f"{key}_labels": result.labels.astype(np.int32),
                f"{key}_embedding": result.embedding.astype(np.float32),
                f"{key}_eigenvalues": result.eigenvalues.astype(np.float64),
                f"{key}_mean_maps": result.mean_maps.astype(np.float32),
                f"{key}_thumbs": result.thumbs.astype(np.uint8),
            }
        )
    buffer = io.BytesIO()
    # numpy's stub lets **arrays bind to savez_compressed's allow_pickle: bool; these are all arrays.
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
    try:
        write_all_or_nothing(
            {
                folder / ARRAYS_FILE: buffer.getvalue(),
                folder / ANALYSIS_FILE: (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode("utf-8"),
                folder / NOTES_FILE: _notes_bytes(analysis.notes),
            }
        )
    except FGVisError as exc:
        raise DatasetAnalysisError(f"the analysis cannot be saved: {exc}") from None
    analysis.folder = folder
    return folder


def save_notes(analysis: DatasetAnalysis) -> Path:
    """Write the reviewer's notes of a saved analysis (``notes.json`` in its folder)."""
    if analysis.folder is None:
        raise DatasetAnalysisError("the analysis is not saved yet: save it before its notes")
    path = analysis.folder / NOTES_FILE
    try:
        write_all_or_nothing({path: _notes_bytes(analysis.notes)})
    except FGVisError as exc:
        raise DatasetAnalysisError(f"the notes cannot be saved: {exc}") from None
    return path


def _notes_bytes(notes: dict[str, str]) -> bytes:
    return (
        json.dumps({"version": VERSION, "notes": dict(sorted(notes.items()))}, indent=1, ensure_ascii=False) + "\n"
    ).encode("utf-8")


def _class_json(entry: ClassAnalysis) -> dict:
    data = {
        "target": entry.target,
        "label": entry.label,
        "message": entry.message,
        "items": [item.to_json() for item in entry.items],
    }
    result = entry.result
    if result is not None:
        data.update(
            {
                "clusters_chosen": result.clusters_chosen,
                "chosen_by": result.chosen_by,
                "neighbours": result.neighbours,
                "eigenvalues": [round(float(v), 6) for v in result.eigenvalues],
                "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
                "clusters": [_cluster_json(cluster) for cluster in result.clusters],
            }
        )
    return data


def _cluster_json(cluster: ClusterStats) -> dict:
    return {
        "index": cluster.index,
        "size": cluster.size,
        "share": round(cluster.share, 6),
        "members": [int(m) for m in cluster.members],
        "centre": [round(v, 4) for v in cluster.centre],
        "spread": round(cluster.spread, 4),
        "border_share": round(cluster.border_share, 4),
        "concentration": round(cluster.concentration, 4),
        "overlap": None if cluster.overlap is None else round(cluster.overlap, 4),
        "tightness": round(cluster.tightness, 4),
        "flagged": cluster.flagged,
        "reasons": list(cluster.reasons),
    }


def find_analysis(folder: str | Path) -> Path | None:
    """The saved analysis folder for ``folder``: ``folder`` itself when it holds ``analysis.json``, its
    ``analysis/`` subfolder when that does, else ``None``."""
    folder = Path(folder)
    for candidate in (folder, folder / ANALYSIS_FOLDER):
        if (candidate / ANALYSIS_FILE).is_file():
            return candidate
    return None


def load_analysis(folder: str | Path) -> DatasetAnalysis:
    """Read a saved analysis (the folder holding ``analysis.json``, or a results folder with an
    ``analysis/`` subfolder) with its notes.

    Raises
    ------
    DatasetAnalysisError
        No analysis there, or files that are unreadable or do not belong together."""
    folder = Path(folder)
    found = find_analysis(folder)
    if found is None:
        raise DatasetAnalysisError(f"{folder} holds no saved analysis ({ANALYSIS_FILE}): run fgvis analyze first")
    path = found / ANALYSIS_FILE
    try:
        regular_file(path, "an analysis file", DatasetAnalysisError)
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetAnalysisError(f"{path} cannot be read ({exc}): run fgvis analyze again") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise DatasetAnalysisError(f"{path} is not a dataset analysis of FGVis Studio")
    if document.get("version") != VERSION:
        raise DatasetAnalysisError(
            f"{path} is of version {document.get('version')}, this reads {VERSION}: run fgvis analyze again"
        )
    try:
        regular_file(found / ARRAYS_FILE, "the analysis arrays", DatasetAnalysisError)
        with np.load(found / ARRAYS_FILE, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except DatasetAnalysisError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DatasetAnalysisError(f"{found / ARRAYS_FILE} cannot be read ({exc}): run fgvis analyze again") from None
    try:
        classes = [_class_from_json(entry, arrays) for entry in document["classes"]]
        results_dir = Path(document["results_dir"])
        if not results_dir.is_absolute():
            results_dir = found / results_dir
        analysis = DatasetAnalysis(
            results_dir=results_dir,
            game=str(document["game"]),
            settings=dict(document.get("settings") or {}),
            classes=classes,
            skipped=[dict(row) for row in document.get("skipped") or []],
            created=str(document.get("created", "")),
            folder=found,
            seconds=float(document.get("seconds") or 0.0),
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise DatasetAnalysisError(
            f"{path} and {ARRAYS_FILE} do not belong together or are damaged ({exc}): run fgvis analyze again"
        ) from None
    if not (found / ANALYSIS_FOLDER).is_dir() and found.name == ANALYSIS_FOLDER and not analysis.results_dir.is_dir():
        analysis.results_dir = found.parent  # moved with its results folder
    analysis.notes = _read_notes(found / NOTES_FILE)
    return analysis


def _class_from_json(data: dict, arrays: dict) -> ClassAnalysis:
    entry = ClassAnalysis(
        int(data["target"]),
        str(data["label"]),
        [MapItem.from_json(i) for i in data["items"]],
        message=str(data.get("message") or ""),
    )
    if "clusters" not in data:
        return entry
    key, count = entry.key, len(entry.items)
    labels = arrays[f"{key}_labels"].astype(np.int64)
    embedding = arrays[f"{key}_embedding"].astype(np.float32)
    mean_maps, thumbs = arrays[f"{key}_mean_maps"], arrays[f"{key}_thumbs"]
    clusters = [_cluster_from_json(c) for c in data["clusters"]]
    if (
        labels.shape != (count,)
        or embedding.shape != (count, 2)
        or len(thumbs) != count
        or len(mean_maps) != len(clusters)
    ):
        raise ValueError(f"class {entry.label!r}: {count} items but arrays for {len(labels)}")
    for cluster in clusters:
        if len(cluster.members) and (
            cluster.members.max() >= count or not (labels[cluster.members] == cluster.index).all()
        ):
            raise ValueError(f"class {entry.label!r}: cluster {cluster.index}'s members do not match the labels")
    entry.result = MapClusters(
        labels=labels,
        embedding=embedding,
        eigenvalues=arrays[f"{key}_eigenvalues"].astype(np.float64),
        clusters_chosen=int(data["clusters_chosen"]),
        chosen_by=str(data["chosen_by"]),
        neighbours=int(data["neighbours"]),
        mean_maps=mean_maps.astype(np.float32),
        thumbs=thumbs.astype(np.uint8),
        clusters=clusters,
        seconds={str(k): float(v) for k, v in dict(data.get("seconds") or {}).items()},
    )
    return entry


def _cluster_from_json(data: dict) -> ClusterStats:
    return ClusterStats(
        index=int(data["index"]),
        members=np.asarray(data["members"], np.int64),
        share=float(data["share"]),
        centre=(float(data["centre"][0]), float(data["centre"][1])),
        spread=float(data["spread"]),
        border_share=float(data["border_share"]),
        concentration=float(data["concentration"]),
        overlap=_optional_number(data.get("overlap")),
        tightness=float(data["tightness"]),
        flagged=bool(data["flagged"]),
        reasons=[str(r) for r in data.get("reasons") or []],
    )


def _read_notes(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    notes = data.get("notes") if isinstance(data, dict) else None
    if not isinstance(notes, dict):
        return {}
    return {str(k): str(v) for k, v in notes.items() if isinstance(v, str)}


def class_summary(entry: ClassAnalysis) -> str:
    """One line about a class: maps, clusters and how they were chosen, flagged clusters."""
    if entry.result is None:
        return f"{entry.label} ({entry.target}): not analysed: {entry.message}"
    result = entry.result
    flagged = len(entry.flagged)
    flags = f", {flagged} flagged" if flagged else ""
    return (
        f"{entry.label} ({entry.target}): {len(entry.items)} maps, {result.clusters_chosen} cluster(s) "
        f"({result.chosen_by}){flags}"
    )


def skipped_summary(skipped: list[dict]) -> str:
    reasons = Counter(row["reason"].split(":")[0] for row in skipped)
    return ", ".join(f"{count} {reason}" for reason, count in reasons.most_common())


def _optional_text(value) -> str | None:
    return None if value is None else readable_name(str(value))


def _optional_number(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _box(value) -> list[float] | None:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    numbers = [n for n in (_optional_number(v) for v in value) if n is not None]
    return numbers if len(numbers) == 4 else None
