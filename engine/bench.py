"""Benchmarks that print Markdown tables; nothing is asserted.

* ``fgvis bench speed`` (or ``python -m engine.bench``): time per FGVis step, defense on/off, against a
  bare forward+backward pass.
* ``fgvis bench defaults``: both games on the bundled photos with the default model -- the runs that
  chose the defaults in docs/DEFAULTS.md; settings can be overridden to compare.
"""

from __future__ import annotations

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
