"""``fgvis bench quality``: every method x every metric on one model and image set, as tables and files.

Two kinds of data:

* ``synthetic_shapes`` (default): the shipped CNN on generated images whose evidence is known (the
  target shape's pixels, :mod:`engine.synthetic`), explained for their true class; adds the pointing
  game and the energy inside the ground-truth mask.
* any other model (``efficientnet_lite0`` by default for photos): the images of a folder (the bundled
  photos by default), explained for the model's top-1 class.

Writes ``quality.md`` (the tables printed), ``quality.csv`` (one row per method), ``quality.json``
(everything, per item) and ``deletion_curves.png`` / ``insertion_curves.png`` (mean curves).
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .baselines import METHODS, Attribution, attribute
from .bench import device_name
from .errors import ConfigError
from .fgvis import explain
from .metrics import (
    delete_top,
    deletion_insertion,
    energy_inside,
    excess_activation,
    make_reference,
    mask_budget,
    pointing_game,
    randomisation_check,
    sparsity,
)  # fmt: skip
from .models import ClassifierModel, frozen, load_model
from .output import write_atomic
from .resources import sample_images
from .types import FGVisConfig

SYNTHETIC = "synthetic_shapes"
#: Methods the randomisation check runs by default (each one is re-run once per randomised layer).
RANDOMISATION_METHODS = ("fgvis", "gradient", "guided_backprop", "gradcam", "integrated_gradients")


@dataclass
class QualityData:
    """``x`` ``(N, C, H, W)`` model input, ``targets`` ``(N,)``, ``names`` per item, ``masks`` ``(N, H, W)``
    bool ground truth or ``None``."""

    x: torch.Tensor
    targets: torch.Tensor
    names: list[str]
    masks: torch.Tensor | None = None
    note: str = ""


@dataclass
class QualityReport:
    markdown: str
    rows: list[dict]
    details: dict
    files: dict[str, Path] = field(default_factory=dict)


def load_quality_data(model: ClassifierModel, images: Path | None, count: int) -> QualityData:
    """The benchmark's items for ``model``: for a synthetic model (``synthetic_shapes``, ``synthetic_clutter``)
    its generated set with ground-truth masks and true classes (unless ``images`` is given), else up to
    ``count`` images of ``images`` (default: the bundled photos), top-1 targets."""
    from .synthetic import MODEL_NAMES, TEST_SEED, generate, to_tensor

    variant = {name: variant for variant, name in MODEL_NAMES.items()}.get(model.name)
    if variant is not None and images is None:
        data = generate(count, TEST_SEED + 1, variant)  # not the images the accuracy was measured on
        x = to_tensor(data.images)
        names = [f"{variant.removesuffix('s')}{i:03d}" for i in range(count)]
        return QualityData(
            x, torch.from_numpy(data.labels), names, torch.from_numpy(data.masks),
            note=f"{count} generated {variant} images (seed {TEST_SEED + 1}), true class as target",
        )  # fmt: skip
    from .batch import images_in
    from .images import load_image

    paths = (images_in(images) if images is not None else sample_images())[:count]
    if not paths:
        raise ConfigError(f"no images in {images}")
    x = torch.cat([model.preprocessing(load_image(path))[0] for path in paths])
    with torch.no_grad(), frozen(model.module):
        targets = model.module(x.to(model.device)).argmax(1).cpu()
    return QualityData(
        x,
        targets,
        [p.stem for p in paths],
        note=f"{len(paths)} images from {images or 'resources/samples'}, top-1 class as target",
    )


def run_quality_benchmark(
    model_name: str = SYNTHETIC,
    *,
    images: Path | None = None,
    methods: Sequence[str] = METHODS,
    out_dir: Path | None = None,
    count: int = 32,
    reference: str = "blur",  # what removed pixels become, for the metrics and for FGVis alike
    randomisation_items: int = 4,
    randomisation_methods: Sequence[str] = RANDOMISATION_METHODS,
    config: FGVisConfig | None = None,
    mp_steps: int = 300,
    log: Callable[[str], None] = lambda message: None,
) -> QualityReport:
    """Run the benchmark and (with ``out_dir``) write its files; see the module docstring."""
    started = time.perf_counter()
    model = load_model(model_name)  # "synthetic_shapes" is one of its names
    data = load_quality_data(model, images, count)
    module = model.module
    device = model.device
    x, targets = data.x.to(device), data.targets.to(device)
    removed = make_reference(x, reference)
    # FGVis optimises towards the same reference the metrics remove pixels to (as Meaningful
    # Perturbation does with its blur), so that its deletion is scored on the change it was asked for.
    config = replace(config or FGVisConfig(), reference=reference)
    with torch.no_grad(), frozen(module):
        p_x = torch.softmax(module(x), 1).gather(1, targets[:, None])[:, 0].cpu().numpy()
    attributions: dict[str, Attribution] = {}
    for method in methods:
        log(f"{method}: explaining {len(data.names)} items")
        attributions[method] = attribute(method, model, x, targets, config=config, mp_steps=mp_steps)
    budget = mask_budget(attributions["fgvis"].mask) if "fgvis" in attributions else None
    rows, per_item, curves = [], {}, {}
    with frozen(module):
        for method, result in attributions.items():
            log(f"{method}: metrics")
            deletion = deletion_insertion(module, x, result.evidence, targets, removed, mode="deletion")
            insertion = deletion_insertion(module, x, result.evidence, targets, removed, mode="insertion")
            curves[method] = (deletion, insertion)
            shape = sparsity(result.evidence)
            item = {
                "deletion_auc": deletion.auc, "insertion_auc": insertion.auc,
                "l1": shape["l1"], "active": shape["active"], "high_frequency": shape["high_frequency"],
            }  # fmt: skip
            if budget is not None:
                item["p_after_equal_budget"] = delete_top(module, x, result.evidence, targets, removed, budget)
            if data.masks is not None:
                item["pointing"] = pointing_game(result.evidence, data.masks, tolerance=2).astype(float)
                item["energy_inside"] = energy_inside(result.evidence, data.masks)
            per_item[method] = {k: np.asarray(v, dtype=float).tolist() for k, v in item.items()}
            row = {"method": method, **{k: float(np.mean(v)) for k, v in item.items()}}
            row["seconds_per_item"] = result.seconds / len(data.names)
            rows.append(row)
    log("adversarial-evidence monitor (preservation, defense on and off)")
    monitor = _monitor(model, x, targets, config)
    log("randomisation check")
    chosen = [m for m in randomisation_methods if m in methods]
    randomisation = _randomisation(model, x[:randomisation_items], targets[:randomisation_items], chosen, config,
                                   mp_steps)  # fmt: skip
    details = {
        "model": model.name,
        "data": data.note,
        "items": data.names,
        "p_original": p_x.tolist(),
        "reference": reference,
        "equal_budget_pixels": None if budget is None else budget.tolist(),
        "rows": rows,
        "per_item": per_item,
        "monitor": monitor,
        "randomisation": randomisation,
        "machine": _machine(device),
        "seconds": round(time.perf_counter() - started, 1),
        "fgvis_config": config.to_dict(),
        "mp_steps": mp_steps,
    }
    markdown = _markdown(details, data)
    report = QualityReport(markdown, rows, details)
    if out_dir is not None:
        report.files = _write(out_dir, report, curves)
    return report


def _monitor(model: ClassifierModel, x: torch.Tensor, targets: torch.Tensor, config: FGVisConfig) -> dict:
    """Preservation with and without the defense: score inflation and ``h(e) > h(x)`` per layer."""
    out = {}
    for defense in (True, False):
        result = explain(model.module, x, targets, game="preserve", defense=defense, config=config)
        e = result.explanation.to(x.device)
        with frozen(model.module):
            units, mass = excess_activation(model.module, x, e)
        out["on" if defense else "off"] = {
            "score_inflation": (result.prob_explanation - result.prob_original).tolist(),
            "mask_mean": result.mask.flatten(1).mean(1).tolist(),
            "units_above": units.tolist(),
            "mass_above": mass.tolist(),
        }
    return out


def _randomisation(model, x, targets, methods, config, mp_steps) -> dict:
    out = {}
    for method in methods:

        def evidence(module, method=method):
            return attribute(method, module, x, targets, config=config, mp_steps=mp_steps).evidence

        stages = randomisation_check(evidence, model.module)
        out[method] = {"layers": [name for name, _ in stages], "rho": [rho.tolist() for _, rho in stages]}
    return out


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _markdown(details: dict, data: QualityData) -> str:
    has_truth = data.masks is not None
    has_budget = details["equal_budget_pixels"] is not None
    head = ["method", "deletion AUC (lower better)", "insertion AUC (higher better)"]
    if has_budget:
        head.append("p after equal-budget deletion (lower better)")
    if has_truth:
        head += ["pointing game", "energy inside mask"]
    head += ["L1", "active pixels", "high-frequency energy", "s per item"]
    lines = [
        f"Model `{details['model']}`, {details['data']}; removed pixels become the {details['reference']} reference. "
        f"{details['machine']}; whole run {details['seconds']:.0f} s.",
        "",
        "| " + " | ".join(head) + " |",
        "|---|" + "---:|" * (len(head) - 1),
    ]
    for row in details["rows"]:
        cells = [row["method"], f"{row['deletion_auc']:.3f}", f"{row['insertion_auc']:.3f}"]
        if has_budget:
            cells.append(f"{row['p_after_equal_budget']:.3f}")
        if has_truth:
            cells += [f"{row['pointing']:.2f}", f"{row['energy_inside']:.3f}"]
        cells += [f"{row['l1']:.3f}", f"{row['active']:.3f}", f"{row['high_frequency']:.3f}",
                  f"{row['seconds_per_item']:.2f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    if has_budget:
        pixels = details["equal_budget_pixels"]
        total = int(data.x.shape[2] * data.x.shape[3])
        median = statistics.median(pixels)
        lines += ["", f"Equal budget: the FGVis (defense on) deletion mask's L1, median {median:.0f} of {total} "
                      f"pixels ({median / total:.2%}); p(x) mean {_mean(details['p_original']):.3f}."]  # fmt: skip
    monitor = details["monitor"]
    lines += [
        "",
        "Adversarial-evidence monitor (FGVis preservation): score inflation = p(e) - p(x); units / mass above = "
        "share of activation units with h(e) > h(x), and share of activation mass in that excess, mean over layers.",
        "",
        "| defense | score inflation (mean) | max | mask mean | units above | mass above | worst layer, units above |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key in ("on", "off"):
        entry = monitor[key]
        lines.append(
            f"| {key} | {_mean(entry['score_inflation']):+.3f} | {max(entry['score_inflation']):+.3f} | "
            f"{_mean(entry['mask_mean']):.3f} | {_mean(entry['units_above']):.4f} | {_mean(entry['mass_above']):.4f} | "
            f"{max(entry['units_above'], default=0):.4f} |"
        )
    randomisation = details["randomisation"]
    if randomisation:
        lines += [
            "",
            "Cascading randomisation (Adebayo et al.): Spearman rank correlation between the map of the trained model "
            "and of the model with its top k weight layers re-initialised (mean over items; lower = more "
            "sensitive to the weights, as an explanation should be).",
            "",
            "| method | top layer randomised | half the layers | all layers |",
            "|---|---:|---:|---:|",
        ]
        for method, entry in randomisation.items():
            rho = [float(np.mean(r)) for r in entry["rho"]]
            lines.append(f"| {method} | {rho[0]:.3f} | {rho[len(rho) // 2]:.3f} | {rho[-1]:.3f} |")
    return "\n".join(lines)


def _machine(device: torch.device) -> str:
    return f"{device_name(device)}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def _write(out_dir: Path, report: QualityReport, curves: dict) -> dict[str, Path]:
    """All result files at once (all or nothing, see :func:`engine.output.write_atomic`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(report.rows[0]))
    writer.writeheader()
    writer.writerows(report.rows)
    contents = {
        "md": (out_dir / "quality.md", (report.markdown + "\n").encode()),
        "csv": (out_dir / "quality.csv", buffer.getvalue().encode()),
        "json": (out_dir / "quality.json", (json.dumps(report.details, indent=1) + "\n").encode()),
    }
    for index, mode in enumerate(("deletion", "insertion")):
        contents[mode] = (out_dir / f"{mode}_curves.png", _plot({m: c[index] for m, c in curves.items()}, mode))
    write_atomic(dict(contents.values()))
    return {key: path for key, (path, _) in contents.items()}


def _plot(curves: dict, mode: str) -> bytes:
    """Mean curve per method as PNG bytes (matplotlib's Agg canvas; no GUI backend is loaded)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for method, curve in curves.items():
        axes.plot(curve.fractions, curve.probs.mean(0), label=f"{method} (AUC {curve.auc.mean():.3f})")
    axes.set_xlabel(f"fraction of pixels {'removed' if mode == 'deletion' else 'inserted'}")
    axes.set_ylabel("target probability (mean)")
    axes.set_title(f"{mode.capitalize()} curves")
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
