"""The Ray benchmark (``fgvis bench cluster``): explanations per second of the local batch
(:func:`engine.results.batch.run_batch`) against the batch on Ray (:func:`engine.results.cluster.run_batch_on_ray`)
with 1, 2, ... workers, Ray's fixed start-up cost, and how far the two paths' masks agree. Prints a Markdown
table; nothing is asserted (results in docs/BENCHMARKS.md, "Ray"). Needs the cluster extra:
``pip install -e '.[cluster]'``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from engine.core.explanation import FGVisConfig
from engine.errors import ClusterError
from engine.results.batch import image_files, run_batch
from engine.results.cluster import ModelSource, require_ray, run_batch_on_ray, start_ray


def measure_startup(address: str | None = None) -> float:
    """Seconds to start (or join) Ray and run one trivial task: the fixed cost of a Ray run."""
    ray = require_ray()
    started = time.perf_counter()
    start_ray(ray, address)
    try:
        ray.get(ray.remote(lambda: 1).remote())
    finally:
        ray.shutdown()
    return time.perf_counter() - started


def run_cluster_benchmark(
    images: Path,
    *,
    source: ModelSource | None = None,
    workers: Sequence[int] = (1, 2),
    count: int = 32,
    config: FGVisConfig | None = None,
    batch_size: int = 4,
    scratch: Path | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> str:
    """Explanations per second of the local batch and of Ray with each number of ``workers`` on the same
    ``count`` images of ``images`` (copied to a scratch folder), Ray's fixed start-up cost, and whether the
    two paths agree. Returns a Markdown table.

    The local batch runs first in this process with the threads torch picks (its model loaded before the
    clock starts). Each Ray run starts a local instance sized to this machine before its clock starts (that
    start-up is measured on its own and added in the last column); its time includes what a Ray run adds:
    the driver's check of the model and the workers' start and model loads. Agreement: the share of mask
    values that differ from the local batch's by more than 1e-3 (a binarised mask's value on the threshold
    may flip when a worker adds in another order), and the largest difference."""
    ray = require_ray()
    source = source or ModelSource()
    config = config or FGVisConfig()
    paths = image_files(images)[:count]
    if not paths:
        raise ClusterError(f"no images in {images}")
    work = Path(scratch or tempfile.mkdtemp(prefix="fgvis-cluster-bench-"))
    folder = work / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for path in paths:
        shutil.copy(path, folder / path.name)
    model = source.load()
    started = time.perf_counter()
    local = run_batch(model, folder, work / "local", config=config, batch_size=batch_size)
    local_s = time.perf_counter() - started
    del model
    items = len(local.written)
    rows = [("local batch (this process)", "-", local_s, items / local_s, "-", local_s)]
    log(f"local: {items} items in {local_s:.1f} s")
    startup = measure_startup()
    log(f"Ray start-up: {startup:.1f} s")
    for count_workers in workers:
        out = work / f"ray{count_workers}"
        start_ray(ray, None)
        try:
            started = time.perf_counter()
            summary = run_batch_on_ray(source, folder, out, workers=count_workers, config=config, batch_size=batch_size)
            seconds = time.perf_counter() - started
        finally:
            ray.shutdown()
        agreement = mask_agreement(work / "local", out, local.written)
        rows.append(
            (
                f"Ray, {count_workers} worker(s)",
                str(count_workers),
                seconds,
                len(summary.written) / seconds,
                agreement,
                seconds + startup,
            )
        )
        log(f"Ray {count_workers}: {len(summary.written)} items in {seconds:.1f} s; masks: {agreement}")
    lines = [
        f"{items} explanations ({len(paths)} images, {config.steps} steps max, batch size {batch_size}); "
        f"Ray start-up (start a local instance and run one task): {startup:.1f} s",
        "",
        "| run | workers | wall time (s) | explanations / s | vs local | masks vs local | with Ray's start-up (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    base = rows[0][3]
    for name, workers_text, seconds, rate, agreement, whole in rows:
        lines.append(
            f"| {name} | {workers_text} | {seconds:.1f} | {rate:.3f} | {rate / base:.2f}x | {agreement} | {whole:.1f} |"
        )
    lines += ["", _same_threads_agreement(source, folder, work, workers, config, batch_size, log)]
    if scratch is None:
        shutil.rmtree(work, ignore_errors=True)
    return "\n".join(lines)


def _same_threads_agreement(source, folder, work, workers, config, batch_size, log) -> str:
    """Re-run the first ``batch_size`` images in this process with one torch thread, as a worker runs
    them, and compare with the Ray runs' masks: the paths agree once the thread count (which changes the
    order of float sums, and so which value of a binarised mask lands on its threshold) is the same."""
    subset = work / "subset"
    subset.mkdir(exist_ok=True)
    for path in image_files(folder)[:batch_size]:
        shutil.copy(path, subset / path.name)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        again = run_batch(source.load(), subset, work / "local-1-thread", config=config, batch_size=batch_size)
    finally:
        torch.set_num_threads(before)
    parts = [
        f"{count} worker(s): {mask_agreement(work / 'local-1-thread', work / f'ray{count}', again.written)}"
        for count in workers
    ]
    text = (
        f"Masks of the first {len(again.written)} items computed again in this process with one thread (as a "
        f"worker): against Ray with {'; '.join(parts)}."
    )
    log(text)
    return text


def mask_agreement(first: Path, second: Path, stems: Sequence[str], tolerance: float = 1e-3) -> str:
    """How far the masks of ``stems`` in two results folders agree, in words: the share of mask values that
    differ by more than ``tolerance`` and the largest difference (items missing from either are counted)."""
    differing = total = missing = 0
    largest = 0.0
    for stem in stems:
        a, b = Path(first) / f"{stem}_mask.npy", Path(second) / f"{stem}_mask.npy"
        if not (a.is_file() and b.is_file()):
            missing += 1
            continue
        gap = np.abs(np.load(a).astype(np.float64) - np.load(b).astype(np.float64))
        differing += int((gap > tolerance).sum())
        total += gap.size
        largest = max(largest, float(gap.max(initial=0.0)))
    share = differing / total if total else float("nan")
    text = f"{share:.3%} of values differ (largest {largest:.2g})"
    return text + (f"; {missing} item(s) missing" if missing else "")
