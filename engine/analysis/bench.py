"""Benchmarks of the dataset review (``fgvis bench analysis``).

* The **planted Clever-Hans benchmark** (:func:`run_analysis_benchmark`): held-out images of the planted set
  (:mod:`engine.evaluation.synthetic`, variant ``"planted"``), a third of the planted class's images with the spurious
  marker, explained by ``fgvis batch`` with the shipped ``synthetic_planted`` CNN (true class as target);
  ``analyze`` on the batch folder; does the cluster holding most marked images hold almost only them
  (**purity >= 0.9**), most of them (**recall >= 0.8**), and is it flagged? The same analysis on Grad-CAM
  maps of the same images (:mod:`engine.evaluation.baselines`) for comparison.
* The **scale measurement** (:func:`run_scale_benchmark`): the analysis of N synthetic maps of one class
  (:func:`synthetic_class_maps`), each size in a fresh process, with its time per stage and peak memory.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import core

if TYPE_CHECKING:  # the benchmark imports torch only when it runs
    from engine.core.explanation import Game

#: Share of the held-out planted-class images that carry the marker.
HELDOUT_MARKED_SHARE = 1 / 3
#: Seed of the held-out images (neither the training nor the test seed of the model).
HELDOUT_SEED = 1001
#: Targets of the planted benchmark.
PURITY_TARGET, RECALL_TARGET = 0.9, 0.8


@dataclass
class BenchReport:
    """``markdown`` table(s), the ``rows`` behind them and the ``files`` written."""

    markdown: str
    rows: list[dict] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def marker_cluster(labels: np.ndarray, truth: np.ndarray) -> dict:
    """The cluster holding most of the ``truth`` (marked) maps: its index, size, purity (marked share of
    it) and recall (its share of the marked)."""
    labels, truth = np.asarray(labels), np.asarray(truth, bool)
    if not truth.any():
        return {"cluster": None, "size": 0, "purity": math.nan, "recall": math.nan}
    counts = np.bincount(labels[truth], minlength=int(labels.max()) + 1)
    best = int(np.argmax(counts))
    size = int((labels == best).sum())
    return {"cluster": best, "size": size, "purity": counts[best] / size, "recall": counts[best] / truth.sum()}


# ---------------------------------------------------------------------------------------------- planted set
def heldout_images(planted: int, per_class: int, seed: int = HELDOUT_SEED):
    """Held-out planted-set images: ``planted`` images of the planted class (a third marked) and
    ``per_class`` of every other class. Returns ``(images, labels, marked)``."""
    from engine.evaluation.synthetic import CLASSES, PLANTED_CLASS, generate

    marked_wanted = round(planted * HELDOUT_MARKED_SHARE)
    wanted = {label: per_class for label in range(len(CLASSES))}
    wanted[PLANTED_CLASS] = planted
    count = 4 * len(CLASSES) * max(planted, per_class)
    data = generate(count, seed, "planted")
    is_marked = data.marked
    assert is_marked is not None  # the planted set says which images carry the marker
    chosen: list[int] = []
    for label in range(len(CLASSES)):
        members = np.flatnonzero(data.labels == label)
        if label == PLANTED_CLASS:
            marked = members[is_marked[members]][:marked_wanted]
            clean = members[~is_marked[members]][: planted - marked_wanted]
            members = np.sort(np.r_[marked, clean])
        chosen.extend(members[: wanted[label]].tolist())
    indices = np.array(sorted(chosen))
    return data.images[indices], data.labels[indices], is_marked[indices]


def run_analysis_benchmark(
    out_dir: str | Path | None = None,
    *,
    per_class: int = 12,
    planted: int = 60,
    games: Sequence[Game] = ("preserve", "delete"),
    config=None,
    model=None,
    seed: int = HELDOUT_SEED,
    log: Callable[[str], None] | None = None,
) -> BenchReport:
    """The planted Clever-Hans benchmark (module docstring). ``out_dir`` keeps the images, the batch
    folder, the analyses with their HTML reports and ``analysis.md``/``analysis.json`` (a temporary folder
    when ``None``). ``model``: default the shipped ``synthetic_planted`` CNN."""
    import tempfile

    import torch
    from PIL import Image

    from engine.core.explanation import FGVisConfig
    from engine.evaluation.baselines import attribute
    from engine.evaluation.synthetic import CLASSES, PLANTED_CLASS, load_shapes_model, to_tensor
    from engine.results.batch import run_batch

    from .report import write_report
    from .results import analyze, read_evidence

    say = log or (lambda message: None)
    config = config or FGVisConfig()
    model = model or load_shapes_model("planted")
    temporary = tempfile.TemporaryDirectory() if out_dir is None else None
    out = Path(temporary.name) if temporary is not None else Path(out_dir or ".")
    started = time.perf_counter()
    images, labels, marked = heldout_images(planted, per_class, seed)
    truth: dict[str, dict] = {}
    for label in range(len(CLASSES)):
        folder = out / "images" / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        for index in np.flatnonzero(labels == label):
            name = f"img_{index:04d}.png"
            Image.fromarray(images[index]).save(folder / name)
            truth[f"{CLASSES[label]}/{name}"] = {"label": CLASSES[label], "marked": bool(marked[index])}
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    batch_dir = out / "batch"
    rows = []
    for game in games:
        for label in range(len(CLASSES)):
            say(f"FGVis {game}: explaining the {CLASSES[label]} images")
            run_batch(
                model,
                out / "images" / CLASSES[label],
                batch_dir,
                targets=[CLASSES[label]],
                games=(game,),
                config=config,
                batch_size=16,
            )
        say(f"analysing the {game} maps")
        review = analyze(batch_dir, game=game, out_dir=out / f"analysis_{game}", log=lambda m: say(f"  {m}"))
        assert review.folder is not None  # analyze() saved it
        write_report(review, review.folder / "report.html")
        planted_entry = review.class_for(PLANTED_CLASS)
        is_marked = np.array(
            [truth[f"{CLASSES[PLANTED_CLASS]}/{item.image}"]["marked"] for item in planted_entry.items]
        )
        results = [(entry.target, entry.result) for entry in review.classes if entry.result is not None]
        maps = np.stack([read_evidence(batch_dir, item) for item in planted_entry.items])
        rows.append(_row(f"FGVis {game}", planted_entry.result, is_marked, results, PLANTED_CLASS, maps))
    say("Grad-CAM maps of the same images")
    results, gradcam_maps = [], {}
    for label in range(len(CLASSES)):
        chosen = np.flatnonzero(labels == label)
        targets = torch.full((len(chosen),), label)
        evidence = attribute("gradcam", model, to_tensor(images[chosen]), targets).evidence.numpy()
        results.append((label, core.cluster_maps(evidence)))
        gradcam_maps[label] = (evidence, marked[chosen])
    planted_maps, planted_marked = gradcam_maps[PLANTED_CLASS]
    planted_result = dict(results)[PLANTED_CLASS]
    rows.append(_row("Grad-CAM", planted_result, planted_marked, results, PLANTED_CLASS, planted_maps))
    seconds = time.perf_counter() - started
    markdown = _markdown(rows, planted, per_class, int(marked.sum()), seconds)
    files = {}
    if temporary is None:
        files = {"markdown": out / "analysis.md", "json": out / "analysis.json"}
        files["markdown"].write_text(markdown + "\n")
        files["json"].write_text(json.dumps({"rows": rows, "seconds": round(seconds, 1)}, indent=1) + "\n")
    else:
        temporary.cleanup()
    return BenchReport(markdown, rows, files)


def _row(
    method: str,
    result,
    is_marked: np.ndarray,
    results: list[tuple[int, core.MapClusters]],
    planted_class: int,
    maps: np.ndarray,
) -> dict:
    """One line of the table: the marker cluster of ``result`` (the planted class) and the flags there and
    in the other classes' ``results`` (``(class, MapClusters)`` pairs); and the marker cluster when the
    planted class's ``maps`` are split in two clusters (given, not chosen by the eigengap)."""
    found = marker_cluster(result.labels, is_marked)
    two = marker_cluster(core.cluster_maps(maps, clusters=2, embedding="spectral").labels, is_marked)
    cluster = result.clusters[found["cluster"]] if found["cluster"] is not None else None
    others_flagged = [c.index for c in result.clusters if c.flagged and c is not cluster]
    elsewhere = sum(c.flagged for target, other in results if target != planted_class for c in other.clusters)
    return {
        "method": method,
        "maps": len(result.labels),
        "marked": int(is_marked.sum()),
        "clusters": result.clusters_chosen,
        "chosen_by": result.chosen_by,
        "marker_cluster_size": found["size"],
        "purity": round(float(found["purity"]), 3),
        "recall": round(float(found["recall"]), 3),
        "flagged": bool(cluster is not None and cluster.flagged),
        "reasons": list(cluster.reasons) if cluster is not None else [],
        "other_flagged_in_class": len(others_flagged),
        "flagged_in_other_classes": elsewhere,
        "purity_k2": round(float(two["purity"]), 3),
        "recall_k2": round(float(two["recall"]), 3),
        "passed": bool(
            found["purity"] >= PURITY_TARGET
            and found["recall"] >= RECALL_TARGET
            and cluster is not None
            and cluster.flagged
        ),
    }


def _markdown(rows: list[dict], planted: int, per_class: int, marked: int, seconds: float) -> str:
    head = (
        f"Planted Clever-Hans set: {planted} held-out images of the planted class ({marked} with the marker), "
        f"{per_class} of each other class; {seconds:.0f} s.\n\n"
        "| maps of | planted-class maps | clusters | marker cluster size | purity (>= 0.9) | recall (>= 0.8) "
        "| flagged | other flagged clusters in the class | flagged clusters in other classes | target "
        "| purity / recall with K = 2 given |\n"
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---|---|"
    )
    lines = [head]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['maps']} | {row['clusters']} ({row['chosen_by']}) "
            f"| {row['marker_cluster_size']} "
            f"| {row['purity']:.2f} | {row['recall']:.2f} | {'yes' if row['flagged'] else 'no'} "
            f"| {row['other_flagged_in_class']} | {row['flagged_in_other_classes']} "
            f"| {'PASS' if row['passed'] else 'MISS'} | {row['purity_k2']:.2f} / {row['recall_k2']:.2f} |"
        )
    for row in rows:
        if row["reasons"]:
            lines.append(f"\n{row['method']}, marker cluster: {'; '.join(row['reasons'])}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- synthetic maps
def synthetic_class_maps(count: int, marked_share: float = 0.2, *, size: int = 64, seed: int = 0):
    """Evidence maps of one class with two strategies, for tests and timing: most maps put their evidence
    on a ring-shaped object anywhere in the image (radius 6-11 px of 64, centre 14-50 px); a ``marked_share``
    of them on a 7 px square tag near the bottom-left corner, with a faint copy of the ring (0-30 %); every
    map has a little uniform noise. Returns ``(maps (count, size, size) float32, marked (count,) bool)``;
    the marked maps are the first ones."""
    rng = np.random.default_rng(seed)
    scale = size / 64.0
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / scale
    maps = np.empty((count, size, size), np.float32)
    marked = np.arange(count) < round(marked_share * count)
    for index in range(count):
        cx, cy = rng.uniform(14, 50, 2)
        radius = rng.uniform(6, 11)
        ring = (np.abs(np.hypot(x - cx, y - cy) - radius) < 2.5).astype(np.float32)
        if marked[index]:
            ring *= rng.uniform(0.0, 0.3)
            left, top = 3 + int(rng.integers(0, 5)), 53 + int(rng.integers(-2, 3))
            ring[(x >= left) & (x < left + 7) & (y >= top) & (y < top + 7)] = 1.0
        maps[index] = np.minimum(ring + rng.uniform(0.0, 0.05, (size, size)).astype(np.float32), 1.0)
    return maps, marked


def run_scale_benchmark(
    counts: Sequence[int] = (1000, 10000), *, embedding: str = "tsne", log: Callable[[str], None] | None = None
) -> BenchReport:
    """Time and peak memory of the analysis of ``counts`` synthetic maps (64x64, one class, 5 % marked), each
    size in a fresh Python process (its peak resident memory is the analysis's own plus the interpreter, the
    libraries and the maps). Threads as the environment sets them (``OMP_NUM_THREADS``)."""
    say = log or (lambda message: None)
    rows = []
    for count in counts:
        say(f"scale: {count} maps")
        code = f"from engine.analysis.bench import _scale_child; _scale_child({int(count)}, {embedding!r})"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the scale run on {count} maps failed: {done.stderr.strip()[-2000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    lines = [
        "| maps | analysis s | features | graph | spectrum | clustering | embedding | statistics | clusters "
        "| marker purity / recall | peak memory MB (maps alone) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for row in rows:
        stages = row["stages"]
        lines.append(
            f"| {row['maps']} | {row['seconds']:.1f} | {row['features']:.1f} | "
            + " | ".join(
                f"{stages.get(k, 0.0):.1f}" for k in ("graph", "spectrum", "clustering", "embedding", "statistics")
            )
            + f" | {row['clusters']} | {row['purity']:.2f} / {row['recall']:.2f} | {row['peak_mb']:.0f} "
            f"({row['maps_mb']:.0f}) |"
        )
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        growth = math.log(last["seconds"] / first["seconds"]) / math.log(last["maps"] / first["maps"])
        lines.append(
            f"\nTime grows as N^{growth:.2f} from {first['maps']} to {last['maps']} maps (t-SNE runs 1,000 "
            f"iterations up to {core.TSNE_LARGE} maps, 500 above)."
        )
    return BenchReport("\n".join(lines), rows)


def _scale_child(count: int, embedding: str = "tsne") -> None:
    """One scale measurement, printed as a JSON line (run by :func:`run_scale_benchmark` in a new process)."""
    import resource

    maps, marked = synthetic_class_maps(count, 0.05, seed=count)
    started = time.perf_counter()
    reduced = core.reduce_maps(maps)
    features = time.perf_counter() - started
    result = core.cluster_reduced(reduced, embedding=embedding)
    seconds = time.perf_counter() - started
    found = marker_cluster(result.labels, marked)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "maps": count,
                "seconds": seconds,
                "features": features,
                "stages": result.seconds,
                "clusters": result.clusters_chosen,
                "purity": float(found["purity"]),
                "recall": float(found["recall"]),
                "peak_mb": peak_kb / 1024,
                "maps_mb": maps.nbytes / 2**20,
            }
        )
    )
