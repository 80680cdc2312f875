"""The batch on a Ray cluster (Ray Data): the same items, files and index as :func:`engine.results.batch.run_batch`,
from a local Ray instance on this machine to a cluster of GPU machines.

The driver (this process) lists the images, skips nothing itself and holds the output folder's lock;
Ray Data streams the image list to a pool of actors (``_ExplainStage``), each of which loads the model
**once** and explains a batch of images per call with the engine's batched :func:`engine.explain`
(:func:`engine.results.batch.explain_chunk`), writing every item with the same atomic writes as the local batch.
The driver turns the outcomes into progress and, at the end, writes the index from what is on disk.

Faults: an image that cannot be read or an item that fails is an outcome (listed with its reason); an
actor that dies (killed, out of memory) is restarted by Ray and its batch retried, at most
``max_retries`` times; items it had already written are complete (atomic writes), and the index is
built from disk, so nothing is listed twice. Ray is an optional dependency: ``pip install -e
'.[cluster]'``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.colormaps import DEFAULT_SCALE
from engine.core.explanation import FGVisConfig, Game
from engine.errors import ClusterError, FGVisError
from engine.models.loading import ClassifierModel, load_model

from .batch import (
    BatchProgress,
    BatchSummary,
    BatchTally,
    ItemOutcome,
    batch_lock,
    explain_chunk,
    game_work,
    plan_image,
    prepare_run,
)
from .files import file_stems, readable_name, remove_stale_temporaries

#: What to tell a user whose Python has no Ray.
INSTALL_HINT = "pip install -e '.[cluster]' (or pip install 'ray[data]')"
#: Seconds to wait for a cluster's address to answer before giving up.
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ModelSource:
    """How every worker loads the classifier for itself (the arguments of :func:`engine.load_model`); a
    model object is never shipped between machines."""

    name: str = "efficientnet_lite0"
    weights: str | None = None
    torchscript: str | None = None
    num_classes: int | None = None
    labels: str | None = None
    allow_pickle: bool = False

    def load(self) -> ClassifierModel:
        return load_model(
            self.name,
            weights=self.weights,
            torchscript=self.torchscript,
            num_classes=self.num_classes,
            labels=self.labels,
            allow_pickle=self.allow_pickle,
        )


def require_ray():
    """The ``ray`` module, or a :class:`ClusterError` that says how to install it."""
    try:
        import ray
        import ray.data  # Ray Data needs its extra: pandas, pyarrow
    except ImportError as exc:
        raise ClusterError(f"running on a Ray cluster needs Ray with Ray Data ({exc}): {INSTALL_HINT}") from None
    return ray


def check_address(address: str | None, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast, with a clear :class:`ClusterError`, when a cluster address does not answer.

    ``None``/``"local"`` (a local Ray instance) and ``"auto"`` (the cluster this machine belongs to, found by
    Ray itself) are not checked; ``HOST:PORT`` and ``ray://HOST:PORT`` must accept a TCP connection within
    ``timeout_s`` seconds."""
    if address in (None, "", "local", "auto"):
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdecimal():
        raise ClusterError(f"{address!r} is not a Ray address: give auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ClusterError(
            f"cannot reach the Ray cluster at {address} within {timeout_s:g} s: {reason}. "
            "Is the head running (ray start --head) and the port open?"
        ) from None


class _ExplainStage:
    """A Ray Data actor: loads the model once, then explains the images of each batch it is given.

    ``__call__`` takes a batch of ``{"path": [...], "stem": [...]}`` and returns one row per outcome:
    ``image``, ``item`` (``""`` for an image that could not be read), ``target``, ``target_label``, ``game``,
    ``status``, ``reason``."""

    def __init__(
        self,
        source: ModelSource,
        out_dir: str,
        wanted,
        games: Sequence[Game],
        *,
        overwrite: bool,
        defense: bool,
        config: FGVisConfig,
        colormap: str,
        scale: str,
        app_version: str,
        batch_size: int,
        threads: int,
        use_gpu: bool,
        fault_marker: str | None = None,
    ) -> None:
        import torch

        from engine.core import threads as process  # the thread count and the allocator's thresholds

        process.configure(max(1, threads))
        self.model = source.load()
        device = "cuda" if use_gpu and torch.cuda.is_available() else "cpu"
        self.model.module.to(device)
        self.out_dir, self.wanted, self.games = Path(out_dir), wanted, tuple(games)
        self.options: dict[str, Any] = {
            "defense": defense,
            "config": dataclasses.replace(config, device=device),
            "colormap": colormap,
            "scale": scale,
            "app_version": app_version,
        }
        self.overwrite, self.batch_size, self.fault_marker = overwrite, batch_size, fault_marker

    def __call__(self, batch: dict) -> dict:
        rows: list[ItemOutcome | tuple[str, str]] = []
        planned: list[tuple[Path, str, int]] = []
        for path, stem in zip(batch["path"], batch["stem"], strict=True):
            path = Path(str(path))
            try:
                planned.extend((path, str(stem), target) for target in plan_image(self.model, path, self.wanted))
            except FGVisError as exc:
                rows.append((readable_name(path.name), readable_name(str(exc))))
        work = game_work(
            self.model, planned, self.games, self.out_dir, overwrite=self.overwrite, batch_size=self.batch_size
        )
        for skipped, chunks in work:
            rows.extend(skipped)
            for chunk in chunks:
                outcomes, _ = explain_chunk(self.model, chunk, self.out_dir, **self.options)
                rows.extend(outcomes)
                self._maybe_die()
        return _columns(rows)

    def _maybe_die(self) -> None:
        """Fault injection for tests: the first worker to get here dies like a killed process, once."""
        if self.fault_marker is None:
            return
        try:
            os.close(os.open(self.fault_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os._exit(1)


def _columns(rows) -> dict:
    columns: dict[str, list] = {
        key: [] for key in ("image", "item", "target", "target_label", "game", "status", "reason")
    }
    for row in rows:
        if isinstance(row, ItemOutcome):
            values = (row.image, row.item, row.target, row.target_label, row.game, row.status, row.reason)
        else:  # an image that could not be read
            values = (row[0], "", -1, "", "", "unreadable", row[1])
        for key, value in zip(columns, values, strict=True):
            columns[key].append(value)
    return columns


def run_batch_on_ray(
    source: ModelSource,
    inputs: Path | Sequence[Path],
    out_dir: Path,
    *,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: int = 1,
    gpus_per_worker: float = 0,
    targets="top1",
    games: Sequence[Game] = ("preserve",),
    defense: bool = True,
    config: FGVisConfig | None = None,
    batch_size: int = 8,
    overwrite: bool = False,
    colormap: str = "inferno",
    scale: str = DEFAULT_SCALE,
    app_version: str = "",
    max_retries: int = 3,
    on_progress: Callable[[BatchProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    fault_marker: str | None = None,
) -> BatchSummary:
    """:func:`engine.results.batch.run_batch` on Ray: same arguments and results (files, index, summary).

    Parameters
    ----------
    source
        How each worker loads the model.
    address
        ``None``: a Ray instance already started in this process, else a local one sized to this machine;
        ``"auto"``: the cluster this machine belongs to; ``HOST:PORT`` or ``ray://HOST:PORT``: that cluster.
    workers
        Actors explaining at once (default: the CPUs, or the GPUs, Ray has divided by what one worker takes).
    cpus_per_worker, gpus_per_worker
        Ray resources per actor; a worker with a GPU explains on it. ``cpus_per_worker`` is also its torch
        thread count.
    max_retries
        How often a batch whose worker died is retried (by a restarted worker) before its items fail.
    should_stop
        Polled between batches: ``True`` stops the run (finished items are kept; the next run resumes).
    fault_marker
        For tests: a path; the first worker to finish a chunk creates it and dies.
    """
    ray = require_ray()
    check_address(address)
    config = config or FGVisConfig()
    out_dir = Path(out_dir)
    stop = should_stop or (lambda: False)
    # The driver loads the model too: class names are resolved (and bad ones refused) before anything starts.
    wanted, paths, summary = prepare_run(source.load(), inputs, out_dir, targets)
    per_image = wanted if isinstance(wanted, int) else len(wanted)
    tally = BatchTally(summary, on_progress, total=len(paths) * per_image * len(games))
    started_here = False
    with batch_lock(out_dir):
        remove_stale_temporaries(out_dir)
        if not ray.is_initialized():
            start_ray(ray, address)
            started_here = True
        feed = None
        try:
            stage = {  # the constructor arguments of each worker's _ExplainStage
                "source": source,
                "out_dir": str(out_dir),
                "wanted": wanted,
                "games": tuple(games),
                "overwrite": overwrite,
                "defense": defense,
                "config": config,
                "colormap": colormap,
                "scale": scale,
                "app_version": app_version,
                "batch_size": batch_size,
                "threads": max(1, int(cpus_per_worker)),
                "use_gpu": gpus_per_worker > 0,
                "fault_marker": fault_marker,
            }
            rows = _stream(ray, paths, stage, workers, cpus_per_worker, gpus_per_worker, max_retries, batch_size)
            feed = _RowFeed(rows)
            for row in feed.rows(stop):
                _settle(tally, row, per_image * len(games))
            summary.cancelled = feed.stopped
        except Exception as exc:  # Ray's own errors (a lost cluster, retries exhausted) end the run with a message
            if isinstance(exc, FGVisError):
                raise
            raise ClusterError(f"the Ray run stopped: {type(exc).__name__}: {exc}"[:2000]) from exc
        finally:
            if started_here:
                ray.shutdown()  # on a cancel: ends the actors now, their in-flight items with them
            if feed is not None:
                feed.close(wait=not started_here)
        tally.write_index(out_dir)
    return summary


class _RowFeed:
    """The outcome rows of a Ray run, read from Ray Data in a background thread so that a cancel is seen
    within :data:`POLL_S` seconds instead of when the next batch of explanations finishes (minutes on a CPU).

    :meth:`rows` yields rows until the run ends or ``stop()`` says so (:attr:`stopped`); Ray's errors are
    raised in the caller's thread. :meth:`close` ends the reading: after the caller shut Ray down the
    thread ends on its own (``wait=False``); on a Ray instance the caller keeps, it is told to stop after
    the batch it waits for and is waited for (``wait=True``), which closes the Ray Data iterator there."""

    POLL_S = 0.25
    SHUTDOWN_WAIT_S = 5.0
    _END = object()

    def __init__(self, rows) -> None:
        import queue
        import threading

        self._rows = rows
        self._queue: queue.Queue = queue.Queue()
        self._closing = threading.Event()
        self.stopped = False
        self._thread = threading.Thread(target=self._read, name="fgvis-ray-rows", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for row in self._rows:
                self._queue.put(row)
                if self._closing.is_set():
                    break
            self._queue.put(self._END)
        except BaseException as exc:  # handed to the caller's thread
            self._queue.put(exc)
        finally:
            close = getattr(self._rows, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):  # Ray was shut down under it: nothing left to close
                    close()

    def rows(self, stop: Callable[[], bool]):
        import queue

        while True:
            stopping = stop()
            try:
                # After a stop, only what has already arrived (finished items are settled, not dropped).
                item = self._queue.get_nowait() if stopping else self._queue.get(timeout=self.POLL_S)
            except queue.Empty:
                if stopping:
                    self.stopped = True
                    return
                continue
            if item is self._END:
                return  # the run ended: a stop that came after its last row cancels nothing
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self, wait: bool) -> None:
        """Stop reading: ``wait`` for the batch in flight (a Ray instance the caller keeps), or, after the
        caller shut Ray down, give the thread a few seconds to notice (it is a daemon either way)."""
        self._closing.set()
        self._thread.join(None if wait else self.SHUTDOWN_WAIT_S)
        if self._thread.is_alive():
            warnings.warn("the Ray row reader did not end after Ray was shut down", RuntimeWarning, stacklevel=2)


def start_ray(ray, address: str | None) -> None:
    """Start a local Ray instance sized to this machine (``address`` ``None``, ``""`` or ``"local"``) or join
    the cluster at ``address``; Ray's dashboard, log forwarding and logging set-up are left off. ``ray`` is
    the module (:func:`require_ray`). Raises :class:`ClusterError` with Ray's reason when that fails."""
    options = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if address in (None, "", "local"):
            ray.init(num_cpus=os.cpu_count() or 1, **options)
        else:
            ray.init(address=address, **options)
    except Exception as exc:  # ConnectionError, RuntimeError, ...: Ray's wording, with the address
        raise ClusterError(f"cannot start or join Ray at {address or 'this machine'}: {exc}"[:2000]) from None


def _stream(ray, paths, stage: dict, workers, cpus_per_worker, gpus_per_worker, max_retries, batch_size):
    """The run's Ray Data pipeline, planned here (in the caller's thread), and a generator of its outcome
    rows, one at a time as the actors finish their batches (empty when there are no images). ``stage``:
    the keyword arguments of each worker's :class:`_ExplainStage`."""
    if not paths:
        return iter(())
    available = ray.cluster_resources()
    if workers is None:
        by_cpu = int(available.get("CPU", 1) // max(cpus_per_worker, 1))
        by_gpu = int(available.get("GPU", 0) // gpus_per_worker) if gpus_per_worker else by_cpu
        workers = max(1, min(by_cpu, by_gpu, len(paths)))
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the run has its own progress line; Ray Data's would repeat it
    context.print_on_execution_start = False
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
    stems = file_stems(paths)
    dataset = ray.data.from_items(
        [{"path": str(p), "stem": s} for p, s in zip(paths, stems, strict=True)],
        override_num_blocks=max(1, min(len(paths), 4 * workers)),
    )
    with warnings.catch_warnings():
        # Bounding restarts and retries is only possible through ray_remote_args in Ray 2.60 (deprecated there,
        # without a named replacement yet; pyproject pins Ray below its removal).
        warnings.simplefilter("ignore", DeprecationWarning)
        results = dataset.map_batches(
            _ExplainStage,
            fn_constructor_kwargs=stage,
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker or None,
            batch_format="numpy",
            max_restarts=max_retries,
            max_task_retries=max_retries,
        )
    return _rows(results)


def _rows(results):
    for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
        for index in range(len(batch["status"])):
            yield {key: _plain(values[index]) for key, values in batch.items()}


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _settle(tally: BatchTally, row: dict, items_per_image: int) -> None:
    if row["status"] == "unreadable":
        tally.image_failed(row["image"], row["reason"])
        tally.total -= items_per_image  # counted in the total before anything was read
        return
    outcome = ItemOutcome(
        row["image"], row["item"], int(row["target"]), row["target_label"], row["game"], row["status"], row["reason"]
    )
    tally.image_read(Path(outcome.image))  # an item row: its image was read when the worker planned it
    tally.settle(outcome)
