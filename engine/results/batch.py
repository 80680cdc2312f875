"""Explain every image of a folder: per-image exports, an index (CSV, JSON, HTML), resumable, and
never stopped by a bad file (those are listed at the end, and in the index, with the reason)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.colormaps import DEFAULT_SCALE
from engine.core.explanation import FGVisConfig, Game, StepState
from engine.core.fgvis import explain
from engine.errors import ConfigError, FGVisError
from engine.models.images import load_image
from engine.models.loading import ClassifierModel

from .export import SUFFIXES, complete_export, export_explained, write_all_or_nothing
from .files import file_stems, readable_name, remove_stale_temporaries
from .report import index_report

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
#: Columns of ``index.csv`` (and keys of each ``index.json`` row). ``status`` is ``"done"``, ``"cancelled"``
#: (a partial result), ``"failed"`` or ``"ignored"`` (a file of the folder that is not an image); a failed or
#: ignored row has the reason in ``reason``, the image name, the class
#: and game when the failure was of one item (empty when the image itself could not be read), and no numbers.
INDEX_COLUMNS = (
    "image", "target", "target_label", "game", "defense", "prob_original", "prob_explanation", "prob_rescored",
    "top1_explanation_label", "mask_mean", "steps", "goal_met", "survives_8bit", "cancelled", "summary",
    "status", "reason", "prob_reference",
)  # fmt: skip
#: The index files, and the record of the items that failed (kept so the index can be rewritten from disk).
INDEX_FILES = ("index.csv", "index.json", "index.html")
FAILURES_FILE = "failures.json"
#: Name endings of the pictures an export writes (``STEM + ending``): never explained as photos.
OUTPUT_PICTURES = tuple(suffix for suffix in SUFFIXES.values() if Path(suffix).suffix.lower() in IMAGE_SUFFIXES)


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
    ignored: list[str] = field(default_factory=list)  # files of the folder that are not images (by suffix)


def image_files(folder: Path, out_dir: Path | None = None) -> list[Path]:
    """The images directly in ``folder``, sorted by name, without the pictures a batch wrote.

    Every entry with an image suffix is listed, also one that is not a regular file (a FIFO, a broken or
    looping symbolic link): reading it fails with the reason, so it is reported, never silently skipped.

    Subfolders are not searched, so a results folder inside ``folder`` (``--out images/results``) is never
    read. Left out of ``folder`` itself: every file an export summary JSON there names as its own, and, when
    ``folder`` is a batch's results folder (it holds an ``index.json``, or it is ``out_dir``, the folder the
    coming batch writes to), every file named like an export's pictures (``*_overlay.png``,
    ``*_evidence.png``, ``*_explanation.png``, ``*_mask8.png``, ``*_mask16.png``)."""
    folder = Path(folder)
    paths = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not _is_folder(p)]
    return sorted(without_batch_outputs(paths, out_dir))


def ignored_files(folder: Path) -> list[str]:
    """Names of the files directly in ``folder`` that a batch does not look at: no image suffix (hidden
    files, the batch's own JSON/NPY outputs and index files excepted)."""
    names = []
    with contextlib.suppress(OSError):
        for path in Path(folder).iterdir():
            name = path.name
            if name.startswith(".") or path.suffix.lower() in IMAGE_SUFFIXES or _is_folder(path):
                continue
            if name in INDEX_FILES or name == FAILURES_FILE or name.endswith((".json", ".npy")):
                continue
            names.append(readable_name(name))
    return sorted(names)


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def without_batch_outputs(paths: Sequence[Path], out_dir: Path | None = None) -> list[Path]:
    """``paths`` without the pictures a batch wrote (the rule of :func:`image_files`, folder by folder)."""
    outputs: dict[Path, set[str]] = {}
    kept = []
    for path in paths:
        folder = path.parent
        if folder not in outputs:
            outputs[folder] = _written_by_a_batch(folder, out_dir)
        if path.name in outputs[folder] or (None in outputs[folder] and path.name.lower().endswith(OUTPUT_PICTURES)):
            log.info("left out %s: a picture written by a batch, not a photo", path)
            continue
        kept.append(path)
    return kept


def _written_by_a_batch(folder: Path, out_dir: Path | None) -> set:
    """Names of the files the export summaries in ``folder`` list, plus ``None`` when ``folder`` is a batch's
    results folder (then every name ending like an export's pictures is one of its outputs)."""
    names: set = set()
    for summary_path in folder.glob("*.json"):
        if summary_path.name in INDEX_FILES or summary_path.name == FAILURES_FILE:
            continue
        data = _read_json(summary_path)
        if isinstance(data, dict) and isinstance(data.get("files"), dict):
            names.update(str(name) for name in data["files"].values())
    if (folder / "index.json").is_file() or (out_dir is not None and _same_folder(folder, out_dir)):
        names.add(None)
    return names


def _same_folder(first: Path, second: Path) -> bool:
    try:
        return Path(first).resolve() == Path(second).resolve()
    except OSError:
        return False


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


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
        if text.startswith("top") and text[3:].isdecimal() and text[3:].isascii():
            if int(text[3:]) < 1:
                raise ConfigError(f"targets {spec!r}: topK needs K >= 1")
            return int(text[3:])
        classes = [part.strip() for part in spec.split(",") if part.strip()]
    else:
        classes = list(spec)
    if not classes:
        raise ConfigError(f"no classes in the targets {spec!r}: give top1, topK or classes separated by commas")
    return classes


def run_batch(
    model: ClassifierModel,
    inputs: Path | Sequence[Path],
    out_dir: Path,
    *,
    targets: str | Sequence = "top1",
    games: Sequence[Game] = ("preserve",),
    defense: bool = True,
    config: FGVisConfig | None = None,
    batch_size: int = 8,
    overwrite: bool = False,
    colormap: str = "inferno",
    scale: str = DEFAULT_SCALE,
    app_version: str = "",
    on_progress: Callable[[BatchProgress], None] | None = None,
    on_step: Callable[[StepState], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> BatchSummary:
    """Explain each image for each target and game, ``batch_size`` items per optimisation.

    An item whose summary JSON already exists (and was not cancelled) is skipped, so an interrupted run
    resumes where it stopped; ``overwrite`` redoes everything. Pictures a batch wrote are not explained
    (:func:`image_files`), also when ``out_dir`` is the images folder. Files that cannot be read (and items
    that fail) are listed in ``BatchSummary.failures`` and the run goes on. The index (``index.csv``,
    ``index.json``, ``index.html``) lists every finished item in ``out_dir`` and, as ``"failed"`` rows with
    the reason, what could not be explained; those are kept in ``failures.json`` until an item succeeds.
    """
    config = config or FGVisConfig()
    out_dir = Path(out_dir)
    wanted, paths, summary = prepare_run(model, inputs, out_dir, targets)
    for stale in remove_stale_temporaries(out_dir) if out_dir.is_dir() else []:
        log.warning("removed %s, left behind by a batch that was killed", stale)
    with batch_lock(out_dir):
        return _run_locally(
            model,
            paths,
            out_dir,
            summary,
            wanted,
            games=games,
            defense=defense,
            config=config,
            batch_size=batch_size,
            overwrite=overwrite,
            colormap=colormap,
            scale=scale,
            app_version=app_version,
            on_progress=on_progress,
            on_step=on_step,
            should_stop=should_stop,
        )


def prepare_run(
    model: ClassifierModel, inputs: Path | Sequence[Path], out_dir: Path, targets: str | Sequence
) -> tuple[int | list[int], list[Path], BatchSummary]:
    """What every batch engine starts from: the targets (K of top-K, or class indices: a bad class name
    stops the run before it starts), the images to explain (never the batch's own outputs) and a summary
    listing the folder's files that are not images."""
    wanted = parse_targets(targets)
    if not isinstance(wanted, int):
        wanted = [model.resolve_target(t) for t in wanted]
    summary = BatchSummary()
    if isinstance(inputs, (str, Path)):
        paths = image_files(inputs, out_dir)
        summary.ignored = ignored_files(inputs)
    else:
        paths = without_batch_outputs([Path(p) for p in inputs], out_dir)
    return wanted, paths, summary


def _run_locally(
    model,
    paths,
    out_dir,
    summary,
    wanted,
    *,
    games,
    defense,
    config,
    batch_size,
    overwrite,
    colormap,
    scale,
    app_version,
    on_progress,
    on_step,
    should_stop,
) -> BatchSummary:
    stop = should_stop or (lambda: False)
    items: list[tuple[Path, str, int]] = []  # (path, stem, target index)
    tally = BatchTally(summary, on_progress)
    for path, stem in zip(paths, file_stems(paths), strict=True):
        try:
            chosen = plan_image(model, path, wanted)
        except FGVisError as exc:
            tally.image_failed(path, str(exc))
            continue
        tally.image_read(path)
        items.extend((path, stem, target) for target in chosen)
    tally.total = len(items) * len(games)
    for skipped, chunks in game_work(model, items, games, out_dir, overwrite=overwrite, batch_size=batch_size):
        for outcome in skipped:
            tally.settle(outcome)
        for chunk in chunks:
            if stop():
                summary.cancelled = True
                break
            outcomes, warnings = explain_chunk(
                model,
                chunk,
                out_dir,
                defense=defense,
                config=config,
                colormap=colormap,
                scale=scale,
                app_version=app_version,
                on_step=on_step,
                should_stop=stop,
            )
            summary.warnings.extend(warnings)
            for outcome in outcomes:
                tally.settle(outcome)
            if any(outcome.status == "cancelled" for outcome in outcomes):
                summary.cancelled = True
                break
        if summary.cancelled:
            break
    tally.write_index(out_dir)
    return summary


def game_work(
    model: ClassifierModel,
    planned: Sequence[tuple[Path, str, int]],
    games: Sequence[Game],
    out_dir: Path,
    *,
    overwrite: bool,
    batch_size: int,
) -> Iterator[tuple[list[ItemOutcome], list[list[BatchItem]]]]:
    """Per game, for the ``(image path, file stem, class)`` items planned: the outcomes of the items already
    done in ``out_dir`` (``"skipped"``, unless ``overwrite``) and the others in chunks of ``batch_size``
    to explain together (the local batch and the Ray workers both work through this)."""
    for game in games:
        skipped, pending = [], []
        for path, stem, target in planned:
            item = BatchItem(path, f"{stem}_{target}_{game}", target, game)
            if not overwrite and item_done(out_dir, item.stem):
                skipped.append(ItemOutcome.of(item, model, "skipped"))
            else:
                pending.append(item)
        size = max(1, batch_size)
        yield skipped, [pending[start : start + size] for start in range(0, len(pending), size)]


#: The file that marks an output folder as being written by a batch (hidden: never listed as input).
LOCK_FILE = ".fgvis-batch.lock"


@contextlib.contextmanager
def batch_lock(out_dir: Path):
    """Hold ``out_dir`` for one batch run: a second run writing to the same folder is refused with a clear
    :class:`ConfigError` (two runs would redo and overwrite each other's items). A lock left by a process
    that no longer runs on this machine is taken over; one from another machine (a shared folder) is
    respected until removed by hand."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = out_dir / LOCK_FILE
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_json(lock)
            if isinstance(holder, dict) and _alive(holder):
                raise ConfigError(
                    f"another batch (process {holder.get('pid')} on {holder.get('host')}, started "
                    f"{holder.get('started')}) is writing to {out_dir}: wait for it to end or choose another folder "
                    f"(if it is gone, delete {lock})"
                ) from None
            with contextlib.suppress(OSError):
                lock.unlink()  # left by a run that was killed
            continue
        with os.fdopen(descriptor, "w") as stream:
            json.dump(mine, stream)
        break
    else:
        raise ConfigError(f"cannot take {lock}: another batch keeps taking it")
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            if _read_json(lock) == mine:
                lock.unlink()


def _alive(holder: dict) -> bool:
    """Whether the process that wrote a lock may still run (always assumed for another machine)."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = holder.get("pid")
    if pid is None:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


class BatchTally:
    """The bookkeeping of one batch run, whichever engine runs it (this process or Ray): outcomes into the
    :class:`BatchSummary`, progress reports, and at the end the index with this run's failures.

    An earlier failure (``failures.json``) stays listed until this run settles it: its image now reads (or
    fails again, with this run's reason), its item is written or found done (or fails again). Ignored files
    are listed as this run found them."""

    def __init__(
        self, summary: BatchSummary, on_progress: Callable[[BatchProgress], None] | None = None, total: int = 0
    ) -> None:
        self.summary, self.on_progress, self.total = summary, on_progress, total
        self.done = 0
        self.failed: list[dict] = []  # this run's failure records (see _failure)
        self.readable: set[str] = set()  # images that could be read this run
        self.settled: set[str] = set()  # items written, found done, failed or cancelled this run

    def image_read(self, path: Path) -> None:
        self.readable.add(readable_name(Path(path).name))

    def image_failed(self, path: Path | str, reason: str) -> None:
        name, reason = readable_name(Path(path).name), readable_name(reason)
        self.summary.failures.append((name, reason))
        self.failed.append(_failure(name, reason))

    def settle(self, outcome: ItemOutcome) -> None:
        self.done += 1
        self.settled.add(outcome.item)
        if outcome.status == "failed":
            self.summary.failures.append((outcome.image, outcome.reason))
            self.failed.append(outcome.failure_record())
        elif outcome.status == "written":
            self.summary.written.append(outcome.item)
        elif outcome.status == "skipped":
            self.summary.skipped.append(outcome.item)
        if self.on_progress is not None:
            self.on_progress(BatchProgress(self.done, self.total, outcome.item, outcome.state()))

    def write_index(self, out_dir: Path) -> None:
        unreadable = {record["image"] for record in self.failed if record["item"] is None}
        kept = [
            record
            for record in read_failures(out_dir)
            if record["status"] == "failed"
            and record["image"] not in unreadable
            and (
                record["item"] not in self.settled
                if record["item"] is not None
                else record["image"] not in self.readable
            )
        ]
        ignored = [
            _failure(name, "not an image file (by its suffix): not looked at", status="ignored")
            for name in self.summary.ignored
        ]
        self.summary.index_files = write_index(out_dir, failures=kept + self.failed + ignored)


@dataclass(frozen=True)
class BatchItem:
    """One optimisation of a batch: an image, its output stem (``IMAGE-STEM_CLASS_GAME``), class and game."""

    path: Path
    stem: str
    target: int
    game: Game


@dataclass(frozen=True)
class ItemOutcome:
    """What became of one :class:`BatchItem`: ``status`` is ``"written"``, ``"skipped"`` (already done),
    ``"cancelled"`` (partial result written, marked cancelled) or ``"failed"`` (``reason`` says why)."""

    image: str
    item: str
    target: int
    target_label: str
    game: str
    status: str
    reason: str = ""

    @classmethod
    def of(cls, item: BatchItem, model: ClassifierModel, status: str, reason: str = "") -> ItemOutcome:
        return cls(
            readable_name(item.path.name),
            item.stem,
            item.target,
            model.label(item.target),
            item.game,
            status,
            readable_name(reason),
        )

    def state(self) -> str:
        """The progress line's words for this outcome."""
        return {"skipped": "skipped (already done)", "failed": f"failed: {self.reason}"}.get(self.status, self.status)

    def failure_record(self) -> dict:
        return _failure(self.image, self.reason, self.item, self.target, self.target_label, self.game)


def plan_image(model: ClassifierModel, path: Path, wanted: int | list) -> list[int]:
    """The classes to explain on the image at ``path`` (its top-K, or the listed classes); reads the image
    (and keeps nothing of it). Raises :class:`FGVisError` (ImageLoadError...) when it cannot be read; a path
    that is not a regular file is refused by :func:`~engine.models.images.load_image` before it is opened."""
    if not isinstance(wanted, int):
        load_image(path)  # a listed class still needs a readable image
        return list(wanted)
    return _targets_for(model, np.asarray(load_image(path).convert("RGB")), wanted)


def explain_chunk(
    model: ClassifierModel,
    chunk: Sequence[BatchItem],
    out_dir: Path,
    *,
    defense: bool = True,
    config: FGVisConfig | None = None,
    colormap: str = "inferno",
    scale: str = DEFAULT_SCALE,
    app_version: str = "",
    on_step: Callable[[StepState], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[list[ItemOutcome], list[str]]:
    """Explain the items of one game together (one batched optimisation) and export each one; returns an
    outcome per item and the run's warnings. The images are read here, so a batch holds the pixels of one
    chunk at a time. An item whose image or export fails is a ``"failed"`` outcome, never an exception."""
    outcomes: dict[int, ItemOutcome] = {}
    loaded = []  # (position in chunk, pixels)
    for position, item in enumerate(chunk):
        try:
            loaded.append((position, np.asarray(load_image(item.path).convert("RGB"))))
        except FGVisError as exc:
            outcomes[position] = ItemOutcome.of(item, model, "failed", str(exc))
    warnings: list[str] = []
    if loaded:
        games = {chunk[position].game for position, _ in loaded}
        if len(games) != 1:
            raise ConfigError(f"one chunk explains one game, not {sorted(games)}")
        try:
            result = explain(
                model,
                [pixels for _, pixels in loaded],
                [chunk[p].target for p, _ in loaded],
                game=games.pop(),
                defense=defense,
                config=config or FGVisConfig(),
                on_step=on_step,
                should_stop=should_stop,
            )
        except FGVisError as exc:
            result = None
            for position, _ in loaded:
                outcomes[position] = ItemOutcome.of(chunk[position], model, "failed", str(exc))
        if result is not None:
            names = [readable_name(chunk[position].path.name) for position, _ in loaded]
            warnings = [_named(warning, names) for warning in result.warnings]
            for index, (position, _) in enumerate(loaded):
                item = chunk[position]
                try:
                    export_explained(
                        result,
                        index,
                        model,
                        item.path,
                        out_dir,
                        item.stem,
                        colormap=colormap,
                        scale=scale,
                        app_version=app_version,
                    )
                except (FGVisError, OSError) as exc:  # one item's files, never the other items
                    outcomes[position] = ItemOutcome.of(item, model, "failed", str(exc))
                    continue
                outcomes[position] = ItemOutcome.of(item, model, "cancelled" if result.cancelled else "written")
    return [outcomes[position] for position in range(len(chunk))], warnings


def _named(warning: str, names: Sequence[str]) -> str:
    """An engine note about "item K" of a batched run, with the file's name instead."""
    match = re.match(r"item (\d+): ", warning)
    if match and 1 <= int(match.group(1)) <= len(names):
        return f"{names[int(match.group(1)) - 1]}: {warning[match.end() :]}"
    return warning


def _failure(
    image: str,
    reason: str,
    item: str | None = None,
    target: int | None = None,
    target_label: str | None = None,
    game: str | None = None,
    status: str = "failed",
) -> dict:
    """One record of ``failures.json``: an image that could not be read (``item`` ``None``), one item
    (image, class, game) that could not be explained, or (``status`` ``"ignored"``) a file of the folder
    that is not an image."""
    return {
        "image": image,
        "item": item,
        "target": target,
        "target_label": target_label,
        "game": game,
        "reason": reason,
        "status": status,
    }


def read_failures(out_dir: Path) -> list[dict]:
    """The failure records in ``out_dir``'s ``failures.json`` (none when there is no such file, as in
    folders written before it existed, or it cannot be read)."""
    data = _read_json(Path(out_dir) / FAILURES_FILE)
    if not isinstance(data, list):
        return []
    records = []
    for entry in data:
        if isinstance(entry, dict) and isinstance(entry.get("image"), str):
            status = "ignored" if entry.get("status") == "ignored" else "failed"
            record = _failure(entry["image"], str(entry.get("reason", "")), status=status)
            record.update({key: entry.get(key) for key in ("item", *_FAILURE_COLUMNS[1:])})
            records.append(record)
    return records


_FAILURE_COLUMNS = ("image", "target", "target_label", "game")


def write_index(out_dir: Path, failures: Sequence[dict] | None = None) -> dict[str, Path]:
    """(Re)write ``index.csv``, ``index.json`` and ``index.html`` from every summary JSON in ``out_dir``,
    followed by one ``"failed"`` row per failure record (:data:`INDEX_COLUMNS`).

    ``failures`` replaces the records of ``failures.json`` (written together with the index, all or
    nothing); ``None`` keeps the ones on disk."""
    out_dir = Path(out_dir)
    rows = []
    for summary_path in sorted(out_dir.glob("*.json")):
        if summary_path.name in INDEX_FILES or summary_path.name == FAILURES_FILE:
            continue
        data = _read_json(summary_path)
        if not isinstance(data, dict) or "prob_explanation" not in data:
            continue
        data["summary"] = summary_path.name
        data["status"] = "cancelled" if data.get("cancelled") else "done"
        data["reason"] = None
        rows.append(data)
    records = read_failures(out_dir) if failures is None else list(failures)
    failed_rows = [
        {
            **dict.fromkeys(INDEX_COLUMNS),
            **{key: record.get(key) for key in _FAILURE_COLUMNS},
            "status": record.get("status", "failed"),
            "reason": record.get("reason", ""),
        }
        for record in sorted(records, key=lambda r: (r["image"], r.get("item") or ""))
    ]
    csv_buffer = io.StringIO()
    writer = csv.DictWriter(csv_buffer, fieldnames=INDEX_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows + failed_rows)
    for row in rows:
        evidence = out_dir / row.get("files", {}).get("overlay", "")
        row["thumbnail"] = _thumbnail(evidence) if evidence.is_file() else None
    html = index_report(rows + failed_rows)
    for row in rows:
        row.pop("thumbnail")
    files = {"csv": out_dir / "index.csv", "json": out_dir / "index.json", "html": out_dir / "index.html"}
    contents = {
        files["csv"]: csv_buffer.getvalue().encode("utf-8"),
        files["json"]: (json.dumps(rows + failed_rows, indent=1, ensure_ascii=False) + "\n").encode("utf-8"),
        files["html"]: html.encode("utf-8"),
    }
    if failures is not None:
        records_json = json.dumps(list(failures), indent=1, ensure_ascii=False) + "\n"
        contents[out_dir / FAILURES_FILE] = records_json.encode("utf-8")
    write_all_or_nothing(contents)
    return files


def item_done(out_dir: Path, stem: str) -> bool:
    """Whether item ``stem`` is done: its files are whole and from one run (:func:`complete_export`) and
    the run was not cancelled."""
    summary = complete_export(out_dir, stem)
    return summary is not None and summary.get("cancelled") is False


def _targets_for(model: ClassifierModel, pixels: np.ndarray, wanted: int | list) -> list[int]:
    if isinstance(wanted, int):
        return [p.index for p in model.predict(pixels, k=wanted)]
    return list(wanted)


def _thumbnail(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image.thumbnail((96, 96))
        return np.asarray(image.convert("RGB"))


#: Output stems of input files (unique, valid, stable): :func:`engine.results.files.file_stems`.
unique_stems = file_stems
