"""Benchmarks that print Markdown tables; nothing is asserted.

* ``fgvis bench speed`` (or ``python -m engine.bench``): time per FGVis step, defense on/off, against a
  bare forward+backward pass.
* ``fgvis bench defaults``: both games on the bundled photos with the default model -- the runs that
  chose the defaults in docs/DEFAULTS.md; settings can be overridden to compare.
"""

from __future__ import annotations

import math
import platform
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from .defense import ActivationFilter
from .fgvis import _Optimisation, _resolve_device, explain
from .models import frozen, load_model
from .resources import sample_images
from .types import FGVisConfig


def run_speed_benchmark(batch_sizes: Sequence[int] = (1, 4, 16), repeats: int = 10, device: str = "auto") -> str:
    """Time the default model at 224x224 and return the results as a Markdown table."""
    model = load_model()
    device_ = _resolve_device(device, model)
    single, _ = model.preprocess(sample_images()[0])
    rows = []
    with frozen(model.module):
        for batch in batch_sizes:
            x = single.repeat(batch, 1, 1, 1).to(device_)
            if device_.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device_)
            steps = {
                "bare": _bare_step(model.module, x),
                "off": _fgvis_step(model.module, x, defense=False),
                "on": _fgvis_step(model.module, x, defense=True),
            }
            times = _interleaved_median_times(steps, repeats, device_)
            if device_.type == "cuda":
                peak = f"{torch.cuda.max_memory_allocated(device_) / 2**20:.0f} MiB (CUDA)"
            else:
                peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (process RSS)"
            rows.append((batch, times["bare"], times["off"], times["on"], peak))
    header = [
        f"Default model ({model.name}) at 224x224 on {_device_name(device_)}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; median of {repeats} interleaved steps.",
        "",
        "| batch | bare fwd+bwd (s) | FGVis step, defense off (s) | FGVis step, defense on (s) "
        "| on / bare | off / bare | per image, defense on (s) | peak memory |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines = [
        f"| {b} | {bare:.4f} | {off:.4f} | {on:.4f} | {on / bare:.2f} | {off / bare:.2f} | {on / b:.4f} | {peak} |"
        for b, bare, off, on, peak in rows
    ]
    return "\n".join(header + lines)


def _bare_step(module: torch.nn.Module, x: torch.Tensor) -> Callable[[int], None]:
    """Forward and backward with respect to the input only: the floor any FGVis step costs."""

    def step(_: int) -> None:
        inputs = x.clone().requires_grad_(True)
        logits = module(inputs)
        logits[:, 0].sum().backward()

    return step


def _fgvis_step(module: torch.nn.Module, x: torch.Tensor, *, defense: bool) -> Callable[[int], None]:
    activation_filter = ActivationFilter(enabled=defense)
    with torch.no_grad(), activation_filter.recording():
        logits = module(x)
    targets = logits.argmax(1)
    probs = torch.softmax(logits, 1)
    loop = _Optimisation(
        "preserve", FGVisConfig(), x, torch.zeros_like(x), targets, probs.gather(1, targets[:, None])[:, 0], targets
    )
    return lambda step: loop.step(module, activation_filter, step)


def _interleaved_median_times(
    steps: dict[str, Callable[[int], None]], repeats: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per call of each step function. The functions take turns, so that slow drifts of
    the machine (other load, clock changes) affect all of them alike; two warm-up rounds are dropped."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for index in range(repeats + 2):
        for name, step in steps.items():
            _synchronize(device)
            started = time.perf_counter()
            step(index + 1)
            _synchronize(device)
            if index >= 2:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()})"


def run_defaults_benchmark(config: FGVisConfig | None = None, device: str = "auto") -> str:
    """Preserve (defense on and off) and delete (defense on) on every bundled photo, in one batch per
    run; returns a Markdown table of probabilities, mask means, goals, steps and times."""
    model = load_model()
    config = config or FGVisConfig()
    if config.device is None:
        config = replace(config, device=device)
    photos = sample_images()
    lines = [
        f"Default model ({model.name}), {len(photos)} bundled photos in one batch per run, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads.",
        f"Settings: {_settings_text(config)}.",
        "",
        "| run | photo | target | p(x) | p(e) | p(e)/p(x) | top-1 kept | mask mean | goal met | steps | run time (s) |",
        "|---|---|---|---:|---:|---:|---|---:|---|---:|---:|",
    ]
    for game, defense in (("preserve", True), ("preserve", False), ("delete", True)):
        result = explain(model, [str(p) for p in photos], game=game, defense=defense, config=config)
        run = f"{game}, defense {'on' if defense else 'off'}"
        for index, photo in enumerate(photos):
            p_x, p_e = float(result.prob_original[index]), float(result.prob_explanation[index])
            kept = bool(result.top1_explanation[index] == result.target[index])
            lines.append(
                f"| {run} | {photo.stem} | {result.target_labels[index]} | {p_x:.3f} | {p_e:.3f} | "
                f"{p_e / p_x:.2f} | {'yes' if kept else 'no'} | {float(result.mask[index].mean()):.3f} | "
                f"{'yes' if bool(result.goal_met[index]) else 'no'} | {result.steps} | {result.wall_time_s:.0f} |"
            )
    return "\n".join(lines)


def _settings_text(config: FGVisConfig) -> str:
    defaults = FGVisConfig()
    changed = {k: v for k, v in config.to_dict().items() if v != getattr(defaults, k) and k != "device"}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "defaults"


if __name__ == "__main__":
    print(run_speed_benchmark())


#: Patience values the early-stopping benchmark replays on the full runs' histories.
PATIENCE_CANDIDATES = (10, 20, 30, 40, 60)


def run_early_stopping_benchmark(config: FGVisConfig | None = None, device: str = "auto") -> str:
    """Early stopping against the fixed budget, per bundled photo (one photo per run, so each has its own
    step count), both games with the defense on.

    The full run has ``patience=0`` (all ``config.steps`` steps); the early run uses ``config`` as is.
    Quality criteria (issue "Fast explanations"): preservation keeps the target probability within 0.05
    of the full run's, deletion ends no more than 0.01 above it. A second table replays other patience
    values on the full runs' histories: the best mask that met the goal by the step where that patience
    would have stopped (exact on the CPU, where the loop is deterministic).
    """
    model = load_model()
    config = config or FGVisConfig()
    if config.device is None:
        config = replace(config, device=device)
    full_config = replace(config, patience=0, stop_when_deleted=False)
    photos = sample_images()
    rows, replays = [], []
    for game in ("preserve", "delete"):
        for photo in photos:
            full = explain(model, str(photo), game=game, config=full_config)
            early = explain(model, str(photo), game=game, config=config)
            rows.append((game, photo.stem, full, early))
            replays.append((game, [_replay(full, patience, config.tolerance) for patience in PATIENCE_CANDIDATES]))
    lines = [
        f"Default model ({model.name}), one bundled photo per run, defense on, torch {torch.__version__}, "
        f"device {full.device}. Settings: {_settings_text(config)}; budget {config.steps} steps.",
        "",
        "| game | photo | steps full | steps early | p(e) full | p(e) early | mask mean full | mask mean early "
        "| same quality |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for game, stem, full, early in rows:
        p_full, p_early = float(full.prob_explanation[0]), float(early.prob_explanation[0])
        lines.append(
            f"| {game} | {stem} | {full.steps} | {early.steps} | {p_full:.3f} | {p_early:.3f} | "
            f"{float(full.mask.mean()):.3f} | {float(early.mask.mean()):.3f} | "
            f"{'yes' if _same_quality(game, p_full, p_early) else 'no'} |"
        )
    for game in ("preserve", "delete"):
        steps = [early.steps for g, _, _, early in rows if g == game]
        lines.append(f"\nMedian steps, {game}: {statistics.median(steps):.0f} of {config.steps}.")
    lines += [
        "",
        "Replayed on the full runs: median steps / items of the same quality / mean mask mean.",
        "",
        "| game | " + " | ".join(f"patience {p}" for p in PATIENCE_CANDIDATES) + " |",
        "|---|" + "---:|" * len(PATIENCE_CANDIDATES),
    ]
    for game in ("preserve", "delete"):
        per_patience = list(zip(*[r for g, r in replays if g == game], strict=True))
        cells = []
        for outcomes in per_patience:
            median = statistics.median(o[0] for o in outcomes)
            same = sum(o[1] for o in outcomes)
            size = statistics.mean(o[2] for o in outcomes)
            cells.append(f"{median:.0f} / {same} of {len(outcomes)} / {size:.3f}")
        lines.append(f"| {game} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _same_quality(game: str, p_full: float, p_early: float) -> bool:
    if game == "preserve":
        return abs(p_early - p_full) <= 0.05
    return p_early <= p_full + 0.01


def _replay(full, patience: int, tolerance: float) -> tuple[int, bool, float]:
    """Where automatic-lambda early stopping with ``patience`` would have stopped the (single-item) run
    ``full``: ``(steps, same quality as the full run, mask mean)``."""
    sense = 1.0 if full.game == "preserve" else -1.0
    best_value, best_prob, best_size, last_improved = math.inf, None, None, 0
    stopped = len(full.history)
    for state in full.history:
        value = sense * float(state.mask_mean[0])
        if bool(state.goal_met[0]) and value < best_value:
            if value < best_value - tolerance:
                last_improved = state.step
            best_value, best_prob, best_size = value, float(state.target_prob[0]), float(state.mask_mean[0])
        if best_prob is not None and state.step >= patience and state.step - last_improved >= patience:
            stopped = state.step
            break
    if best_prob is None:
        return stopped, False, float(full.mask.mean())
    return stopped, _same_quality(full.game, float(full.prob_explanation[0]), best_prob), best_size
