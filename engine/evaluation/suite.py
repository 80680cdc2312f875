"""``fgvis bench quality``: every method x every metric on one model and image set, as tables and files.

Two kinds of data:

* ``synthetic_shapes`` (default): the shipped CNN on generated images whose evidence is known (the
  target shape's pixels, :mod:`engine.evaluation.synthetic`), explained for their true class; adds the pointing
  game and the energy inside the ground-truth mask.
* any other model (``efficientnet_lite0`` by default for photos): the images of a folder (the bundled
  photos by default), explained for the model's top-1 class.

Besides every method's deletion/insertion AUC (with a :data:`DELETION_MARGIN`), concentration and
sparsity: on ground truth, the pointing game (with its chance level) and a sanity check of the protocol
(:func:`sanity_check`); the equal-budget deletion, with FGVis's binarised map next to its soft
explanation; each FGVis game's goal rate and 8-bit round trip; and the issue's targets
(:func:`check_targets`), each with its measured value and PASS/MISS.

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

from engine.core.explanation import Explanation, FGVisConfig, Reference
from engine.core.fgvis import explain
from engine.errors import ConfigError
from engine.models.loading import ClassifierModel, frozen, load_model
from engine.models.resources import sample_images
from engine.results.files import write_atomic

from .baselines import BLUR_SIGMA, METHODS, Attribution, attribute
from .bench import device_name
from .metrics import (
    concentration,
    delete_top,
    deletion_insertion,
    energy_inside,
    excess_activation,
    make_reference,
    mask_budget,
    pointing_chance,
    pointing_game,
    randomisation_check,
    round_trip_8bit,
    sparsity,
)

SYNTHETIC = "synthetic_shapes"
#: Methods the randomisation check runs by default (each one is re-run once per randomised layer).
RANDOMISATION_METHODS = ("fgvis", "gradient", "guided_backprop", "gradcam", "integrated_gradients")
#: Deletion and insertion curves change each region together with the pixels within this many pixels
#: of it (:func:`engine.evaluation.metrics.deletion_insertion`): without it, the ground-truth mask as a map fails
#: the sanity check on the synthetic shapes (the outline left behind is still recognised).
DELETION_MARGIN = 2
#: The pointing game's tolerance in pixels (a disc, TorchRay's definition).
POINTING_TOLERANCE = 2
#: BLUR_SIGMA (imported from .baselines): the Gaussian blur (sigma in pixels) that removed pixels become in
#: the metrics, Meaningful Perturbation's; FGVis optimises towards it too (its own default, 5, is chosen for
#: photos; docs/DEFAULTS.md).


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
            x,
            torch.from_numpy(data.labels),
            names,
            torch.from_numpy(data.masks),
            note=f"{count} generated {variant} images (seed {TEST_SEED + 1}), true class as target",
        )
    from engine.models.images import load_image
    from engine.results.batch import images_in

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
    reference: Reference = "blur",  # what removed pixels become, for the metrics and for FGVis alike
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
    removed = make_reference(x, reference, BLUR_SIGMA)
    # FGVis optimises towards the same reference the metrics remove pixels to (as Meaningful
    # Perturbation does with its blur), so that its deletion is scored on the change it was asked for.
    config = replace(config or FGVisConfig(), reference=reference, blur_sigma=BLUR_SIGMA)
    with torch.no_grad(), frozen(module):
        p_x = torch.softmax(module(x), 1).gather(1, targets[:, None])[:, 0].cpu().numpy()
    attributions: dict[str, Attribution] = {}
    for method in methods:
        log(f"{method}: explaining {len(data.names)} items")
        attributions[method] = attribute(method, model, x, targets, config=config, mp_steps=mp_steps)
    fgvis_mask = attributions["fgvis"].mask if "fgvis" in attributions else None
    budget = mask_budget(fgvis_mask) if fgvis_mask is not None else None
    rows, per_item, curves = [], {}, {}
    with frozen(module):
        for method, result in attributions.items():
            log(f"{method}: metrics")
            curves[method] = tuple(
                deletion_insertion(module, x, result.evidence, targets, removed, mode=mode, margin=DELETION_MARGIN)
                for mode in ("deletion", "insertion")
            )
            shape = sparsity(result.evidence)
            item = {
                "deletion_auc": curves[method][0].auc,
                "insertion_auc": curves[method][1].auc,
                "concentration": concentration(result.evidence),
                "l1": shape["l1"],
                "active": shape["active"],
                "high_frequency": shape["high_frequency"],
            }
            if budget is not None:
                item["p_after_equal_budget"] = delete_top(module, x, result.evidence, targets, removed, budget)
            if data.masks is not None:
                item["pointing"] = pointing_game(result.evidence, data.masks, POINTING_TOLERANCE).astype(float)
                item["energy_inside"] = energy_inside(result.evidence, data.masks)
            per_item[method] = {k: np.asarray(v, dtype=float).tolist() for k, v in item.items()}
            row = {"method": method, **{k: float(np.mean(v)) for k, v in item.items()}}
            row["seconds_per_item"] = result.seconds / len(data.names)
            rows.append(row)
    games = {m: _game(model, a.explanation) for m, a in attributions.items() if a.explanation is not None}
    sanity = None
    if data.masks is not None:
        log("sanity check: the ground-truth mask as a map against a random map")
        with frozen(module):
            sanity = sanity_check(module, x, data.masks, targets, removed, budget)
    log("adversarial-evidence monitor (preservation, defense on and off, zero reference)")
    monitor = _monitor(model, x, targets, replace(config, reference="zero"))
    # None of the items (``randomisation_items`` 0) or none of the methods: the check is not run.
    chosen = [m for m in randomisation_methods if m in methods] if randomisation_items > 0 else []
    log("randomisation check" if chosen else "randomisation check: not run (no items or methods for it)")
    randomisation = _randomisation(
        model, x[:randomisation_items], targets[:randomisation_items], chosen, config, mp_steps
    )
    details = {
        "model": model.name,
        "data": data.note,
        "items": data.names,
        "p_original": p_x.tolist(),
        "reference": reference,
        "equal_budget_pixels": None if budget is None else budget.tolist(),
        "deletion_margin": DELETION_MARGIN,
        "pointing_tolerance": POINTING_TOLERANCE,
        "pointing_chance": None if data.masks is None else pointing_chance(data.masks, POINTING_TOLERANCE).tolist(),
        "rows": rows,
        "per_item": per_item,
        "games": games,
        "sanity": sanity,
        "monitor": monitor,
        "randomisation": randomisation,
        "machine": _machine(device),
        "seconds": round(time.perf_counter() - started, 1),
        "fgvis_config": config.to_dict(),
        "mp_steps": mp_steps,
    }
    details["targets"] = check_targets(_measured(details, data))
    markdown = _markdown(details, data)
    report = QualityReport(markdown, rows, details)
    if out_dir is not None:
        report.files = _write(out_dir, report, curves)
    return report


def _game(model: ClassifierModel, result: Explanation) -> dict:
    """An FGVis method's own result per item: its game's goal, ``p(e)`` of the soft explanation and the
    8-bit round trip (:func:`engine.evaluation.metrics.round_trip_8bit`); ``survival_8bit`` is ``None`` when no
    explanation met its goal."""
    trip = round_trip_8bit(model, result)
    survival = trip.survival_rate
    return {
        "game": result.game,
        "goal_met": result.goal_met.numpy().astype(float).tolist(),
        "p_soft": result.prob_explanation.tolist(),
        "p_8bit": trip.prob.tolist(),
        "goal_met_8bit": trip.goal_met.astype(float).tolist(),
        "survival_8bit": None if np.isnan(survival) else survival,
    }


def sanity_check(
    module: torch.nn.Module,
    x: torch.Tensor,
    masks: torch.Tensor,
    targets: torch.Tensor,
    reference: torch.Tensor,
    budget: Sequence[int] | np.ndarray | None = None,
    *,
    margin: int = DELETION_MARGIN,
    seed: int = 0,
) -> dict:
    """Does the protocol rank a perfect map above a random one? The ground-truth masks ``(N, H, W)`` as
    maps against uniform random maps (a local generator seeded with ``seed``), under the deletion and
    insertion curves (with ``margin``) and, with ``budget``, the equal-budget deletion.

    Returns ``{column: {"perfect", "random": mean score, "items_better": count, "items": N, "passed":
    the perfect map's mean is better (lower deletion AUC and p, higher insertion AUC)}}``; a column that
    fails is not meaningful on this data."""
    generator = torch.Generator().manual_seed(seed)
    maps = {"perfect": masks.float(), "random": torch.rand(masks.shape, generator=generator)}
    out = {}
    for mode, better in (("deletion", np.less), ("insertion", np.greater)):
        scores = {
            name: deletion_insertion(module, x, evidence, targets, reference, mode=mode, margin=margin).auc
            for name, evidence in maps.items()
        }
        out[f"{mode}_auc"] = _verdict(scores, better)
    if budget is not None:
        scores = {name: delete_top(module, x, evidence, targets, reference, budget) for name, evidence in maps.items()}
        out["p_after_equal_budget"] = _verdict(scores, np.less)
    return out


def _verdict(scores: dict[str, np.ndarray], better) -> dict:
    perfect, random = scores["perfect"], scores["random"]
    return {
        "perfect": float(np.mean(perfect)),
        "random": float(np.mean(random)),
        "items_better": int(better(perfect, random).sum()),
        "items": len(perfect),
        "passed": bool(better(np.mean(perfect), np.mean(random))),
    }


def _measured(details: dict, data: QualityData) -> dict:
    """What :func:`check_targets` needs from a run's details."""
    per_item, games, monitor = details["per_item"], details["games"], details["monitor"]
    rows = {row["method"]: row for row in details["rows"]}
    return {
        "has_truth": data.masks is not None,
        "pointing": {m: row["pointing"] for m, row in rows.items() if "pointing" in row},
        "energy_inside": {m: row["energy_inside"] for m, row in rows.items() if "energy_inside" in row},
        "equal_budget": {m: row["p_after_equal_budget"] for m, row in rows.items() if "p_after_equal_budget" in row},
        "concentration_median": {m: float(np.median(v["concentration"])) for m, v in per_item.items()},
        "goal_rate": {m: _mean(game["goal_met"]) for m, game in games.items()},
        "survival_8bit": {m: game["survival_8bit"] for m, game in games.items()},
        "inflation": {key: monitor[key]["inflation"] for key in ("on", "off")},
    }


def check_targets(measured: dict) -> list[dict]:
    """The targets of the explanation-quality issue, checked on measured numbers (a pure function).

    Parameters
    ----------
    measured
        ``has_truth`` (bool: the data has ground-truth masks); per method name: ``pointing``,
        ``energy_inside``, ``equal_budget`` (mean p after equal-budget deletion), ``concentration_median``,
        ``goal_rate`` (share of items whose FGVis goal was met, 0..1) and ``survival_8bit`` (share
        surviving the 8-bit round trip, or ``None``); ``inflation``: ``{"on", "off"}`` mean positive score
        inflation ``max(0, p(e) - p(x))`` of preservation with and without the defense (zero reference).
        Methods whose name does not start with ``fgvis`` are the baselines. Missing entries are allowed.

    Returns
    -------
    list of dict
        ``{"target", "value" (text), "passed" (True, False, or None where it could not be measured)}``.
        Ground-truth targets apply where ``has_truth``, the photo targets (concentration, goal rate,
        equal-budget deletion) where not; the 8-bit and defense targets always.
    """
    out = []

    def add(target: str, value: str, passed: bool | None) -> None:
        out.append({"target": target, "value": value, "passed": passed})

    def at_least(target: str, table: dict, method: str, goal: float) -> None:
        value = table.get(method)
        add(target, "not measured" if value is None else f"{value:.3f}", None if value is None else value >= goal)

    def baselines(table: dict) -> dict:
        return {m: v for m, v in table.items() if not m.startswith("fgvis")}

    if measured.get("has_truth"):
        energy = measured.get("energy_inside", {})
        best = max(baselines(energy).items(), key=lambda item: item[1], default=None)
        for method, game in (("fgvis_preserve", "preservation"), ("fgvis", "deletion")):
            at_least(f"ground truth: FGVis {game} pointing >= 0.9", measured.get("pointing", {}), method, 0.9)
            value = energy.get(method)
            target = f"ground truth: FGVis {game} energy inside >= 2x the best baseline's"
            if value is None or best is None:
                add(target, "not measured", None)
            else:
                add(target, f"{value:.3f} vs 2 x {best[1]:.3f} ({best[0]})", value >= 2 * best[1])
    else:
        for method, game in (("fgvis_preserve", "preservation"), ("fgvis", "deletion")):
            at_least(
                f"photos: median concentration of FGVis {game} >= 0.5",
                measured.get("concentration_median", {}),
                method,
                0.5,
            )
            at_least(f"photos: FGVis {game} goal met on >= 90 % of images", measured.get("goal_rate", {}), method, 0.9)
        budget = measured.get("equal_budget", {})
        target = "photos: equal-budget deletion, binarised FGVis below every baseline"
        others = baselines(budget)
        if "fgvis" not in budget or not others:
            add(target, "not measured", None)
        else:
            best = min(others.items(), key=lambda item: item[1])
            add(target, f"{budget['fgvis']:.3f} vs {best[1]:.3f} ({best[0]})", budget["fgvis"] < best[1])
    at_least(
        ">= 95 % of FGVis deletion explanations survive the 8-bit round trip",
        measured.get("survival_8bit", {}),
        "fgvis",
        0.95,
    )
    inflation = measured.get("inflation", {})
    target = "score inflation without the defense >= 3x with it (zero reference)"
    if "on" not in inflation or "off" not in inflation:
        add(target, "not measured", None)
    else:
        on, off = inflation["on"], inflation["off"]
        add(target, f"{off:.4f} vs 3 x {on:.4f}", off > 0 and off >= 3 * on)
    return out


def _monitor(model: ClassifierModel, x: torch.Tensor, targets: torch.Tensor, config: FGVisConfig) -> dict:
    """Preservation with and without the defense: score inflation (per item, and the mean of its positive
    part ``max(0, p(e) - p(x))``) and ``h(e) > h(x)`` per layer."""
    out = {}
    for defense in (True, False):
        result = explain(model.module, x, targets, game="preserve", defense=defense, config=config)
        e = result.explanation.to(x.device)
        with frozen(model.module):
            units, mass = excess_activation(model.module, x, e)
        out["on" if defense else "off"] = {
            "score_inflation": (result.prob_explanation - result.prob_original).tolist(),
            "inflation": float((result.prob_explanation - result.prob_original).clamp(min=0).mean()),
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
    if has_truth:
        head += [f"pointing game ({details['pointing_tolerance']} px disc)", "energy inside mask"]
    head += ["concentration (top 10 %)", "L1", "active pixels", "high-frequency energy", "s per item"]
    lines = [
        f"Model `{details['model']}`, {details['data']}; removed pixels become the {details['reference']} reference "
        f"(deletion and insertion curves: with a {details['deletion_margin']}-pixel margin). "
        f"{details['machine']}; whole run {details['seconds']:.0f} s.",
        "",
        "| " + " | ".join(head) + " |",
        "|---|" + "---:|" * (len(head) - 1),
    ]
    for row in details["rows"]:
        cells = [row["method"], f"{row['deletion_auc']:.3f}", f"{row['insertion_auc']:.3f}"]
        if has_truth:
            cells += [f"{row['pointing']:.2f}", f"{row['energy_inside']:.3f}"]
        cells += [
            f"{row['concentration']:.3f}",
            f"{row['l1']:.3f}",
            f"{row['active']:.3f}",
            f"{row['high_frequency']:.3f}",
            f"{row['seconds_per_item']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if has_truth:
        lines += [
            "",
            f"Pointing game chance level (a uniformly random point, same tolerance): "
            f"{_mean(details['pointing_chance']):.3f}.",
        ]
    lines += _sanity_lines(details["sanity"])
    if has_budget:
        lines += _budget_lines(details, data)
    lines += _game_lines(details["games"])
    monitor = details["monitor"]
    lines += [
        "",
        "Adversarial-evidence monitor (FGVis preservation, zero reference): score inflation = p(e) - p(x), and the "
        "mean of its positive part max(0, p(e) - p(x)); units / mass above = share of activation units with "
        "h(e) > h(x), and share of activation mass in that excess, mean over layers.",
        "",
        "| defense | score inflation (mean) | max | positive part (mean) | mask mean | units above | mass above | "
        "worst layer, units above |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in ("on", "off"):
        entry = monitor[key]
        lines.append(
            f"| {key} | {_mean(entry['score_inflation']):+.3f} | {max(entry['score_inflation']):+.3f} | "
            f"{entry['inflation']:.4f} | "
            f"{_mean(entry['mask_mean']):.3f} | {_mean(entry['units_above']):.4f} | {_mean(entry['mass_above']):.4f} | "
            f"{max(entry['units_above'], default=0):.4f} |"
        )
    randomisation = details["randomisation"]
    if not randomisation:
        lines += ["", "Cascading randomisation: not run (`--randomisation-items 0` or none of its methods chosen)."]
    else:
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
    lines += ["", "Targets (issue 14):", "", "| target | measured | |", "|---|---|---|"]
    verdicts = {True: "PASS", False: "MISS", None: "not measured"}
    lines += [f"| {t['target']} | {t['value']} | {verdicts[t['passed']]} |" for t in details["targets"]]
    return "\n".join(lines)


def _sanity_lines(sanity: dict | None) -> list[str]:
    if sanity is None:
        return [
            "",
            "No ground truth on this data: the perfect-map-vs-random sanity check cannot run here; the "
            "protocol's check is the one on the ground-truth sets.",
        ]
    names = {
        "deletion_auc": "deletion AUC (lower better)",
        "insertion_auc": "insertion AUC (higher better)",
        "p_after_equal_budget": "p after equal-budget deletion (lower better)",
    }
    lines = [
        "",
        "Sanity check: the ground-truth mask used as a map (perfect) against a uniform random map; a column "
        "is meaningful only where the perfect map wins.",
        "",
        "| column | perfect map | random map | items where perfect is better | check |",
        "|---|---:|---:|---:|---|",
    ]
    failed = []
    for column, entry in sanity.items():
        verdict = "pass" if entry["passed"] else "FAIL: not meaningful on this data"
        lines.append(
            f"| {names[column]} | {entry['perfect']:.3f} | {entry['random']:.3f} | "
            f"{entry['items_better']} of {entry['items']} | {verdict} |"
        )
        if not entry["passed"]:
            failed.append(names[column])
    if failed:
        lines += [
            "",
            f"Not meaningful on this data set (the protocol does not prefer a perfect map): {', '.join(failed)}.",
        ]
    return lines


def _budget_lines(details: dict, data: QualityData) -> list[str]:
    pixels = details["equal_budget_pixels"]
    total = int(data.x.shape[2] * data.x.shape[3])
    median = statistics.median(pixels)
    lines = [
        "",
        f"Equal-budget deletion: every map loses its own top-k pixels, k = the FGVis (defense on) deletion "
        f"mask's L1, median {median:.0f} of {total} pixels ({median / total:.2%}); p(x) mean "
        f"{_mean(details['p_original']):.3f}. FGVis binarised = its own map at its own budget; FGVis soft = "
        "p of its own soft deletion explanation e (not a top-k deletion).",
        "",
        "| method | p after equal-budget deletion (lower better) |",
        "|---|---:|",
    ]
    for row in details["rows"]:
        game = details["games"].get(row["method"], {}).get("game")
        label = f"{row['method']} (binarised)" if game == "delete" else row["method"]
        lines.append(f"| {label} | {row['p_after_equal_budget']:.3f} |")
    for method, game in details["games"].items():
        if game["game"] == "delete":
            lines.append(f"| {method} (soft, its own e) | {_mean(game['p_soft']):.3f} |")
    return lines


def _game_lines(games: dict) -> list[str]:
    if not games:
        return []
    lines = [
        "",
        "FGVis explanations as the app returns them: goal met (preservation p(e) >= preserve_ratio p(x) with the "
        "target top-1; deletion p(e) <= delete_ratio p(x)), p(e), and the 8-bit round trip (e saved as 8-bit "
        "pixels and scored again; survival = share of the explanations meeting their goal that still meet it).",
        "",
        "| method | game | goal met | p(e) mean | p(8-bit e) mean | 8-bit survival |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for method, game in games.items():
        survival = "n/a (no goal met)" if game["survival_8bit"] is None else f"{game['survival_8bit']:.0%}"
        lines.append(
            f"| {method} | {game['game']} | {_mean(game['goal_met']):.0%} | {_mean(game['p_soft']):.3f} | "
            f"{_mean(game['p_8bit']):.3f} | {survival} |"
        )
    return lines


def _machine(device: torch.device) -> str:
    return f"{device_name(device)}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def _write(out_dir: Path, report: QualityReport, curves: dict) -> dict[str, Path]:
    """All result files at once (all or nothing, see :func:`engine.results.files.write_atomic`)."""
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
