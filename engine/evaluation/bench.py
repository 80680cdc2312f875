"""Benchmarks that print Markdown tables; nothing is asserted.

* ``fgvis bench speed`` (or ``python -m engine.evaluation.bench``): time per FGVis step, defense on/off, against a
  bare forward+backward pass.
* ``fgvis bench defaults``: both games on the bundled photos with the default model -- the runs that
  chose the defaults in docs/DEFAULTS.md; settings can be overridden to compare.
* ``fgvis bench early-stop``: early stopping against the fixed step budget, per photo.
* ``fgvis bench seconds``: seconds to a finished explanation per photo, both games, defaults (what a user
  waits for after pressing Run), with the medians.
* ``fgvis bench throughput``: explanations per second per model and batch size, with peak memory.
* ``fgvis bench precision``: bf16 / fp16 autocast against float32 (decisions, masks, time).
* ``fgvis bench profile``: where one model's defended step spends its time (variants, top operators).

The evaluation suite (``fgvis bench quality``) is :mod:`engine.evaluation.suite`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.core import threads
from engine.core.defense import ActivationFilter
from engine.core.explanation import FGVisConfig, Game
from engine.core.fgvis import explain
from engine.core.model_pass import CALLS_BEFORE_SETTLED, TRIAL_ROUNDS
from engine.core.optimisation import Optimisation
from engine.errors import FGVisError
from engine.models.images import load_image
from engine.models.loading import frozen, load_model, resolve_device
from engine.models.resources import sample_images

#: Step budgets of the two explain() calls whose difference gives the cost of a step and of a call.
CALL_STEPS = (20, 100)


@dataclass(frozen=True)
class CallCost:
    """What one :func:`explain` call costs, from two calls of ``short`` and ``long`` steps.

    Attributes
    ----------
    per_step_s
        Marginal seconds per step: ``(t_long - t_short) / (n_long - n_short)``.
    fixed_s
        Seconds per call beyond its steps (reference pass, set-up, binarisation, results):
        ``t_short - n_short * per_step_s``.
    whole_per_step_s
        The long call's seconds divided by the steps it took: what a user waits per step.
    """

    per_step_s: float
    fixed_s: float
    whole_per_step_s: float

    @classmethod
    def from_calls(cls, short: tuple[float, int], long: tuple[float, int]) -> CallCost:
        """``short`` and ``long``: ``(seconds, steps taken)`` of two calls, ``long`` with more steps."""
        (t_short, n_short), (t_long, n_long) = short, long
        if n_long <= n_short:
            raise ValueError(f"the long call must take more steps ({n_long}) than the short one ({n_short})")
        per_step = (t_long - t_short) / (n_long - n_short)
        return cls(per_step, t_short - n_short * per_step, t_long / n_long)

    @classmethod
    def from_repeated_calls(cls, shorts: Sequence[tuple[float, int]], longs: Sequence[tuple[float, int]]) -> CallCost:
        """:meth:`from_calls` on the median seconds of several short and long calls (made in turns, so that
        a slow spell of the machine lands on one call, not on the difference)."""

        def median_call(calls: Sequence[tuple[float, int]]) -> tuple[float, int]:
            if not calls or len({steps for _, steps in calls}) != 1:
                raise ValueError(f"calls to compare must take one number of steps, got {[n for _, n in calls]}")
            return statistics.median(seconds for seconds, _ in calls), calls[0][1]

        return cls.from_calls(median_call(shorts), median_call(longs))


def bare_seconds(model_name: str, batch_size: int, repeats: int, device: str = "cpu") -> float:
    """Median seconds of a bare forward+backward (:func:`_bare_step`) of ``model_name`` at ``batch_size``,
    in this process, after two warm-up passes."""
    model = load_model(model_name)
    device_ = resolve_device(device, model)
    x = model.preprocess(sample_images()[0])[0].repeat(batch_size, 1, 1, 1).to(device_)
    with frozen(model.module):
        return _interleaved_median_times({"bare": _bare_step(model.module, x)}, repeats, device_)["bare"]


def clean_bare_seconds(model_name: str, batch_size: int, repeats: int, device: str = "cpu") -> float:
    """:func:`bare_seconds` measured in a fresh child process, where no engine object has ever run: the
    reference an FGVis step is compared with. The child inherits the thread settings (``$FGVIS_THREADS``,
    ``OMP_WAIT_POLICY``) of this one."""
    request = json.dumps({"model": model_name, "batch": batch_size, "repeats": repeats, "device": device})
    env = {**os.environ, threads.ENV: str(torch.get_num_threads())}
    done = subprocess.run(
        [sys.executable, "-m", "engine.evaluation.bench", "bare", request],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the bare-pass child failed: {done.stderr[-2000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def explain_seconds(model, images: list, steps: int, device: torch.device) -> tuple[float, int]:
    """Wall-clock seconds of one whole :func:`explain` call on ``images`` with ``steps`` steps and early
    stopping off (every step runs), defaults otherwise; returns ``(seconds, steps taken)``."""
    config = FGVisConfig(steps=steps, patience=10**6, device=str(device))
    started = time.perf_counter()
    result = explain(model, images, config=config)
    return time.perf_counter() - started, result.steps


def run_speed_benchmark(
    batch_sizes: Sequence[int] = (1, 4, 16), repeats: int = 10, device: str = "auto", call_repeats: int = 3
) -> str:
    """Time the default model at 224x224 and return the results as Markdown tables: the steps (bare pass,
    FGVis step with the defense off and on), then what a user waits for -- whole :func:`explain` calls,
    ``call_repeats`` of each length in turns -- against a bare pass measured in a clean state (a fresh
    child process before each round of calls, and this process before any FGVis object exists)."""
    model = load_model()
    device_ = resolve_device(device, model)
    single, _ = model.preprocess(sample_images()[0])
    every = FGVisConfig().monitor_every
    clean_here = {b: bare_seconds(model.name, b, repeats, str(device_)) for b in batch_sizes}  # before any FGVis object
    rows = []
    with frozen(model.module):
        for batch in batch_sizes:
            x = single.repeat(batch, 1, 1, 1).to(device_)
            _reset_peak_memory(device_)
            defended = _FGVisStep(model.module, x, defense=True)
            steps: dict[str, Callable[[int], None]] = {
                "bare": _bare_step(model.module, x),
                "off": _FGVisStep(model.module, x, defense=False),
                "on": defended,
                "counted": _FGVisStep(model.module, x, defense=True, monitor_every=1),
            }
            if device_.type == "cuda":  # the FGVis steps replay a CUDA graph; also time them without
                steps["eager"] = _FGVisStep(model.module, x, defense=True, cuda_graph=False)
            times = _interleaved_median_times(steps, repeats, device_)
            # The default step counts the monitor on every `every`-th step: charge that share of its cost.
            times["on"] += max(times["counted"] - times["on"], 0.0) / every
            rows.append((batch, times, _peak_memory(device_), defended.path))
    photo = np.asarray(load_image(sample_images()[0]))
    calls, clean_child = {}, {}
    for batch in batch_sizes:
        # The clean reference is measured in a fresh child before each round of calls, not once up
        # front: this VM's speed drifts by 20 % within minutes, and a ratio of figures taken far apart
        # measures the drift.
        timed: dict[int, list[tuple[float, int]]] = {budget: [] for budget in CALL_STEPS}
        children = []
        for _ in range(call_repeats):
            children.append(clean_bare_seconds(model.name, batch, repeats, str(device_)))
            # One 2-step call opens each round, or the short call (always the next one) would carry a
            # first call's one-off set-up (allocator growth, kernels chosen for new shapes; in the app the
            # model has run before Run is pressed) and the cache eviction by the child's run.
            explain_seconds(model, [photo] * batch, 2, device_)
            for budget in CALL_STEPS:
                timed[budget].append(explain_seconds(model, [photo] * batch, budget, device_))
        calls[batch] = CallCost.from_repeated_calls(*(timed[budget] for budget in CALL_STEPS))
        clean_child[batch] = statistics.median(children)
    header = [
        f"Default model ({model.name}) at 224x224 on {device_name(device_)}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; median of {repeats} interleaved steps. The bare pass is eager;"
        " on CUDA the FGVis steps replay a CUDA graph, 'eager' is the defended step without one. 'Defense "
        f"on' includes 1/{every} of the cost of counting blocked units (the monitor counts every {every}th "
        "step); 'monitor every step' counts on every step. 'Path': what the engine's graph trial kept for "
        "the defended step (replay / eager ms per pass in the trial).",
        "",
        "| batch | bare fwd+bwd (s) | FGVis step, defense off (s) | FGVis step, defense on (s) "
        "| on / bare | off / bare | defense on, monitor every step (s) | that / bare | per image, defense on (s) "
        "| defense on, eager (s) | eager / bare | peak memory | path |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    lines = []
    for b, t, peak, path in rows:
        eager = f"{t['eager']:.4f} | {t['eager'] / t['bare']:.2f}" if "eager" in t else "- | -"
        lines.append(
            f"| {b} | {t['bare']:.4f} | {t['off']:.4f} | {t['on']:.4f} | {t['on'] / t['bare']:.2f} | "
            f"{t['off'] / t['bare']:.2f} | {t['counted']:.4f} | {t['counted'] / t['bare']:.2f} | "
            f"{t['on'] / b:.4f} | {eager} | {peak} | {path} |"
        )
    short_steps, long_steps = CALL_STEPS
    calls_table = [
        "",
        "What a user waits for. 'Clean bare': the bare pass in a fresh child process (no engine object ever "
        f"ran there; median of {call_repeats} children, one before each round of whole calls, each round "
        "opened by a 2-step call) and in this "
        "process before any FGVis object existed; 'bare after' is the bare pass "
        "interleaved with FGVis steps above. 'explain() per step': a whole engine.explain() call of "
        f"{long_steps} steps (early stopping off, defaults otherwise: binarisation, 8-bit check) divided by its "
        f"steps; 'marginal step' and 'fixed cost' come from calls of {short_steps} and {long_steps} steps "
        f"(medians of {call_repeats} each, made in turns), after one 2-step call of the same batch (a first "
        "call's one-off set-up is not counted). Ratios are to the child's clean bare pass.",
        "",
        "| batch | clean bare, child (s) | clean bare, this process (s) | bare after (s) | defended step (s) "
        "| explain() per step (s) | explain() / clean bare | marginal step (s) | step / clean bare "
        "| fixed cost per call (s) | fixed cost in steps | per image per step / clean bare at batch 1 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = clean_child[batch_sizes[0]] / batch_sizes[0] if batch_sizes[0] == 1 else None
    for b, t, _, _ in rows:
        cost, clean = calls[b], clean_child[b]
        per_image = f"{cost.whole_per_step_s / b / base:.2f}" if base else "-"
        calls_table.append(
            f"| {b} | {clean:.4f} | {clean_here[b]:.4f} | {t['bare']:.4f} | {t['on']:.4f} | "
            f"{cost.whole_per_step_s:.4f} | {cost.whole_per_step_s / clean:.2f} | {cost.per_step_s:.4f} | "
            f"{cost.per_step_s / clean:.2f} | {cost.fixed_s:.3f} | {cost.fixed_s / cost.per_step_s:.1f} | {per_image} |"
        )
    return "\n".join(header + lines + calls_table)


#: The competitor of :func:`run_contention_benchmark`: a process keeping every core busy with torch.
_COMPETITOR = (
    "import os, torch\n"
    "torch.set_num_threads(os.cpu_count() or 1)\n"
    "a = torch.randn(512, 512)\n"
    "while True:\n"
    "    a = torch.tanh(a @ a)\n"
)


def run_contention_benchmark(steps: int = 50, device: str = "auto") -> str:
    """One explanation (``steps`` steps, early stopping off) of the default model alone, then while a
    second process keeps every core busy with its own torch threads -- a desktop app shares its machine.
    Returns a Markdown table; the slowdown should stay near the share of the CPU left (about 2x on two
    cores), not many-fold."""
    model = load_model()
    device_ = resolve_device(device, model)
    photo = np.asarray(load_image(sample_images()[0]))
    explain_seconds(model, [photo], 5, device_)  # warm up
    alone, _ = explain_seconds(model, [photo], steps, device_)
    competitor = subprocess.Popen(
        [sys.executable, "-c", _COMPETITOR],
        stdout=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k != threads.ENV},
    )
    try:
        time.sleep(2.0)  # not synchronisation: let the competitor reach its loop before timing
        shared, _ = explain_seconds(model, [photo], steps, device_)
    finally:
        competitor.kill()
        competitor.wait()
    policy = f"GOMP_SPINCOUNT {os.environ.get('GOMP_SPINCOUNT', '(unset)')}, OMP_WAIT_POLICY " + os.environ.get(
        "OMP_WAIT_POLICY", "(unset)"
    )
    return "\n".join(
        [
            f"One explanation of {steps} steps ({model.name}, batch 1, {torch.get_num_threads()} threads, "
            f"{policy}) alone and while another process keeps all {os.cpu_count()} cores busy.",
            "",
            "| alone (s) | with a CPU-heavy neighbour (s) | slowdown |",
            "|---:|---:|---:|",
            f"| {alone:.2f} | {shared:.2f} | {shared / alone:.2f}x |",
        ]
    )


def _bare_step(module: torch.nn.Module, x: torch.Tensor) -> Callable[[int], None]:
    """Forward and backward with respect to the input only: the floor any FGVis step costs."""

    def step(_: int) -> None:
        inputs = x.clone().requires_grad_(True)
        logits = module(inputs)
        logits[:, 0].sum().backward()

    return step


class _FGVisStep:
    """One defended (or undefended) FGVis optimisation step of a preservation, callable once per step
    with the step's number, as :func:`explain` runs it."""

    def __init__(
        self,
        module: nn.Module,
        x: torch.Tensor,
        *,
        defense: bool,
        cuda_graph: bool = True,
        monitor_every: int = FGVisConfig.monitor_every,
        graph_trial_rounds: int = TRIAL_ROUNDS,
    ) -> None:
        self.module = module
        self.filter = ActivationFilter(enabled=defense)
        with torch.no_grad(), self.filter.recording(module):
            logits = module(x)
        targets = logits.argmax(1)
        probs = torch.softmax(logits, 1)
        config = FGVisConfig(cuda_graph=cuda_graph, monitor_every=monitor_every)
        p = probs.gather(1, targets[:, None])[:, 0]
        self.loop = Optimisation(
            "preserve", config, x, torch.zeros_like(x), targets, p, targets, graph_trial_rounds=graph_trial_rounds
        )

    def __call__(self, step: int) -> None:
        self.loop.step(self.module, self.filter, step)

    @property
    def path(self) -> str:
        """What ran once settled: ``eager``, or ``graph`` with the trial's times per pass."""
        model_pass = self.loop.model_pass
        if model_pass is None or not model_pass.timings["graph"]:
            return (model_pass and model_pass.path) or "eager"
        best = {name: min(times) * 1e3 for name, times in model_pass.timings.items()}
        return f"{model_pass.path} ({best['graph']:.1f} / {best['eager']:.1f} ms)"


def _interleaved_median_times(
    steps: dict[str, Callable[[int], None]], repeats: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per call of each step function. The functions take turns, so that slow drifts of
    the machine (other load, clock changes) affect all of them alike. Two warm-up rounds are dropped; on
    CUDA also the engine's graph trial (until the step's path is settled)."""
    warmup = max(2, CALLS_BEFORE_SETTLED) if device.type == "cuda" else 2
    times: dict[str, list[float]] = {name: [] for name in steps}
    for index in range(repeats + warmup):
        for name, step in steps.items():
            _synchronize(device)
            started = time.perf_counter()
            step(index + 1)
            _synchronize(device)
            if index >= warmup:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    """The GPU's name, or ``CPU (<processor>)``: how benchmark tables name the machine."""
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
    runs: tuple[tuple[Game, bool], ...] = (("preserve", True), ("preserve", False), ("delete", True))
    for game, defense in runs:
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


#: Patience values the early-stopping benchmark replays on the full runs' histories.
PATIENCE_CANDIDATES = (10, 20, 30, 40, 60)


def run_early_stopping_benchmark(
    config: FGVisConfig | None = None, device: str = "auto", images: Sequence[Path] | None = None
) -> str:
    """Early stopping against the fixed budget, per photo (the bundled ones unless ``images`` are given;
    one photo per run, so each has its own step count), both games with the defense on.

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
    photos = list(images) if images else sample_images()
    source = "bundled photo" if not images else "given photo"
    rows, replays = [], []
    for game in ("preserve", "delete"):
        for photo in photos:
            full = explain(model, str(photo), game=game, config=full_config)
            early = explain(model, str(photo), game=game, config=config)
            rows.append((game, photo.stem, full, early))
            replays.append((game, [_replay(full, patience, config.tolerance) for patience in PATIENCE_CANDIDATES]))
    lines = [
        f"Default model ({model.name}), one {source} per run, defense on, torch {torch.__version__}, "
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


def run_seconds_benchmark(
    images: Sequence[Path],
    device: str = "auto",
    config: FGVisConfig | None = None,
    model=None,
) -> str:
    """Seconds to a finished explanation, per photo and game: the whole :func:`explain` call on the photo
    file (decoding, preprocessing, the reference pass, the loop with early stopping, binarisation, the
    final scoring), one photo per call, the model's top-1 class, the defaults unless ``config`` is given.

    One 2-step call on the first photo runs before the timed ones, so the figures are those of a session
    that has explained something already: the first explanation of a session also pays a one-off set-up
    (about 0.8 s on this project's CPU: 1.24 s of fixed cost in a cold call against 0.48 s warm). A photo
    that cannot be explained gets a "failed" row and is left out of the medians.
    """
    model = model if model is not None else load_model()
    config = config or FGVisConfig()
    if config.device is None:
        config = replace(config, device=device)
    photos = list(images)
    if not photos:
        raise ValueError("no photos to time")
    explain(model, str(photos[0]), game="preserve", config=replace(config, steps=2))
    rows: dict[Path, dict[str, tuple[float, int, bool]]] = {}
    failed: dict[Path, str] = {}
    device_used = str(config.device)
    for photo in photos:
        for game in ("preserve", "delete"):
            started = time.perf_counter()
            try:
                result = explain(model, str(photo), game=game, config=config)
            except FGVisError as exc:
                failed[photo] = str(exc)
                rows.pop(photo, None)
                break
            seconds = time.perf_counter() - started
            device_used = result.device
            rows.setdefault(photo, {})[game] = (seconds, result.steps, bool(result.goal_met[0]))
    lines = [
        f"{model.name}, one photo per call, top-1 class, defense on, {_settings_text(config)}; device "
        f"{device_used}, {torch.get_num_threads()} thread(s), torch {torch.__version__}.",
        "",
        "| photo | preserve (s) | steps | goal | delete (s) | steps | goal |",
        "|---|---:|---:|---|---:|---:|---|",
    ]
    for photo, games in rows.items():
        cells = []
        for game in ("preserve", "delete"):
            seconds, steps, met = games[game]
            cells += [f"{seconds:.1f}", str(steps), "met" if met else "missed"]
        lines.append(f"| {photo.name} | " + " | ".join(cells) + " |")
    for photo, reason in failed.items():
        lines.append(f"| {photo.name} | failed: {reason} | | | | | |")
    lines.append("")
    if not rows:
        return "\n".join([*lines, "No photo could be explained."])
    for game in ("preserve", "delete"):
        times = [games[game][0] for games in rows.values()]
        counts = [games[game][1] for games in rows.values()]
        per_step = statistics.median(t / max(n, 1) for t, n in zip(times, counts, strict=True))
        lines.append(
            f"{game}: median {statistics.median(times):.1f} s (min {min(times):.1f}, max {max(times):.1f}) "
            f"over {len(times)} photos, median {statistics.median(counts):.0f} steps, {per_step:.3f} s per step."
        )
    return "\n".join(lines)


def _same_quality(game: str, p_full: float, p_early: float) -> bool:
    if game == "preserve":
        return abs(p_early - p_full) <= 0.05
    return p_early <= p_full + 0.01


def _replay(full, patience: int, tolerance: float) -> tuple[int, bool, float]:
    """Where automatic-lambda early stopping with ``patience`` would have stopped the (single-item) run
    ``full``: ``(steps, same quality as the full run, mask mean)``."""
    sense = 1.0 if full.game == "preserve" else -1.0
    best_value, last_improved = math.inf, 0
    best: tuple[float, float] | None = None  # (target probability, mask mean) of the best mask so far
    stopped = len(full.history)
    for state in full.history:
        value = sense * float(state.mask_mean[0])
        if bool(state.goal_met[0]) and value < best_value:
            if value < best_value - tolerance:
                last_improved = state.step
            best_value, best = value, (float(state.target_prob[0]), float(state.mask_mean[0]))
        if best is not None and state.step >= patience and state.step - last_improved >= patience:
            stopped = state.step
            break
    if best is None:
        return stopped, False, float(full.mask.mean())
    best_prob, best_size = best
    return stopped, _same_quality(full.game, float(full.prob_explanation[0]), best_prob), best_size


#: Models of the throughput benchmark: the default model (its real weights) and two torchvision
#: architectures with random weights (speed does not depend on the weights).
THROUGHPUT_MODELS = ("efficientnet_lite0", "resnet50", "vgg16")


def run_throughput_benchmark(
    models: Sequence[str] = THROUGHPUT_MODELS,
    batch_sizes: Sequence[int] = (1, 4, 16, 64),
    repeats: int = 10,
    device: str = "auto",
    steps: int = 300,
    cuda_graph: bool = True,
) -> str:
    """Explanations per second (images x targets) per model and batch size at 224x224, defense on.

    Throughput is ``batch / (steps * time per defended step)``: every explanation of a batch costs the
    same number of steps, so the ratio between batch sizes is independent of ``steps``. A batch size
    that runs out of memory is reported as such (the engine itself would split it)."""
    lines = [
        f"Explanations per second at 224x224, defense on, {steps} steps each, torch {torch.__version__}; "
        f"median of {repeats} steps; CUDA graph {'on' if cuda_graph else 'off'} (CUDA only). 'Path': what the "
        "engine's graph trial kept (replay / eager ms per pass in the trial).",
        "",
        "| model | batch | bare fwd+bwd (s) | defended step (s) | on / bare | explanations/s | vs batch 1 "
        "| peak memory | path |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name in models:
        model = load_model(name, random_weights=name != "efficientnet_lite0")
        device_ = resolve_device(device, model)
        single = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        base = None
        with frozen(model.module):
            for batch in batch_sizes:
                x = single.repeat(batch, 1, 1, 1).to(device_)
                _reset_peak_memory(device_)
                times = defended = None
                try:
                    defended = _FGVisStep(model.module, x, defense=True, cuda_graph=cuda_graph)
                    times = _interleaved_median_times(
                        {"bare": _bare_step(model.module, x), "on": defended}, repeats, device_
                    )
                except torch.cuda.OutOfMemoryError:
                    lines.append(f"| {name} | {batch} | out of memory | | | | | | |")
                if times is None:  # outside the except block, so the failed step's tensors are released
                    del x, defended
                    torch.cuda.empty_cache()
                    continue
                assert defended is not None  # made before the times
                rate = batch / (steps * times["on"])
                base = base or rate
                lines.append(
                    f"| {name} | {batch} | {times['bare']:.4f} | {times['on']:.4f} | {times['on'] / times['bare']:.2f} "
                    f"| {rate:.3g} | {rate / base:.1f}x | {_peak_memory(device_)} | {defended.path} |"
                )
                del x, defended
        model.module.cpu()
        del model
        if device_.type == "cuda":
            torch.cuda.empty_cache()
    lines.insert(0, f"Device: {device_name(device_)}, {torch.get_num_threads()} CPU threads.\n")
    return "\n".join(lines)


def run_profile_benchmark(
    model_name: str = "vgg16",
    batch_sizes: Sequence[int] = (1, 16),
    repeats: int = 10,
    device: str = "auto",
    top: int = 12,
) -> str:
    """Where a defended step's time goes, for one model (random weights except the default model):

    * per batch size, the median step time of the bare forward+backward, the defended step eager, as a
      replayed CUDA graph (kept without a trial) and as the engine runs it (after its graph trial); on
      CUDA each once with cuDNN's heuristics and once with ``torch.backends.cudnn.benchmark`` (the
      fastest algorithms, timed per shape) -- a setting the engine does not change;
    * the operators that take the most time in two eager defended steps (one uncounted, one counting
      the monitor) and two bare steps at the largest batch size, from ``torch.profiler``."""
    model = load_model(model_name, random_weights=model_name != "efficientnet_lite0")
    device_ = resolve_device(device, model)
    single = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    cuda = device_.type == "cuda"
    lines = [
        f"{model_name} at 224x224 on {device_name(device_)}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; median of {repeats} interleaved steps, defense on.",
        "",
        "| batch | cuDNN benchmark | bare fwd+bwd (s) | eager (s) | eager / bare | graph (s) | graph / bare "
        "| engine (s) | engine / bare | engine's path |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    saved_benchmark = torch.backends.cudnn.benchmark
    with frozen(model.module):
        try:
            for batch in batch_sizes:
                x = single.repeat(batch, 1, 1, 1).to(device_)
                for benchmark in (False, True) if cuda else (saved_benchmark,):
                    torch.backends.cudnn.benchmark = benchmark
                    steps: dict[str, Callable[[int], None]] = {
                        "bare": _bare_step(model.module, x),
                        "eager": _FGVisStep(model.module, x, defense=True, cuda_graph=False),
                    }
                    engine = None
                    if cuda:
                        steps["graph"] = _FGVisStep(model.module, x, defense=True, graph_trial_rounds=0)
                        steps["engine"] = engine = _FGVisStep(model.module, x, defense=True)
                    t = _interleaved_median_times(steps, repeats, device_)
                    bare = t["bare"]
                    cells = [f"{t['eager']:.4f} | {t['eager'] / bare:.2f}"]
                    for name in ("graph", "engine"):
                        cells.append(f"{t[name]:.4f} | {t[name] / bare:.2f}" if name in t else "- | -")
                    path = engine.path if engine is not None else "eager"
                    setting = ("on" if benchmark else "off") if cuda else "-"
                    lines.append(f"| {batch} | {setting} | {bare:.4f} | {' | '.join(cells)} | {path} |")
                    del steps, engine
        finally:
            torch.backends.cudnn.benchmark = saved_benchmark
        x = single.repeat(max(batch_sizes), 1, 1, 1).to(device_)
        for title, step in (
            ("defended step, eager", _FGVisStep(model.module, x, defense=True, cuda_graph=False)),
            ("bare forward+backward", _bare_step(model.module, x)),
        ):
            lines += ["", f"Top operators, {title}, batch {max(batch_sizes)} (two steps):", ""]
            try:
                lines += ["```", _profile_table(step, device_, top), "```"]
            except RuntimeError as exc:  # e.g. no access to the GPU's performance counters
                lines.append(f"(the profiler failed: {exc})")
    return "\n".join(lines)


def _profile_table(step: Callable[[int], None], device: torch.device, top: int) -> str:
    """``torch.profiler`` table of two eager steps of ``step`` numbered 9 and 10 (the monitor counts on step
    10), after two warm-up steps, sorted by the operators' own time on the device (CPU time on the CPU)."""
    from torch.profiler import ProfilerActivity, profile

    for index in (1, 2):
        step(index)
    _synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        for index in (9, 10):
            step(index)
        _synchronize(device)
    averages = profiler.key_averages()
    if device.type != "cuda":
        return averages.table(sort_by="self_cpu_time_total", row_limit=top)
    try:
        return averages.table(sort_by="self_device_time_total", row_limit=top)
    except (AttributeError, KeyError, ValueError):  # older torch names it after CUDA
        return averages.table(sort_by="self_cuda_time_total", row_limit=top)


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB (CUDA)"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (process RSS)"


class AutocastModule(nn.Module):
    """Runs ``inner`` under ``torch.autocast`` with ``dtype`` (bf16 or fp16); logits come back as float32."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner = inner
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, dtype=self.dtype):
            return self.inner(x).float()


def run_precision_benchmark(device: str = "auto", steps: int = 100, dtypes: Sequence[str] = ("bf16", "fp16")) -> str:
    """Mixed precision (autocast) against float32 for the default model on the bundled photos, defense
    on, preservation, one batch:

    * filter decisions: with the bounds recorded on ``x`` and the float32 run's explanation ``e``, the
      fraction of activation units whose pass/block decision differs from float32;
    * explanations: a full run under autocast against the float32 run -- mean |mask difference|, and the
      target probability of the autocast explanation re-scored by the float32 model;
    * time per defended step."""
    model = load_model()
    device_ = resolve_device(device, model)
    photos = [str(p) for p in sample_images()]
    # Eager steps throughout: this compares arithmetic, not launch overhead (autocast's cast cache also
    # does not mix with CUDA-graph recording).
    config = FGVisConfig(steps=steps, patience=0, device=str(device_), cuda_graph=False)
    reference = explain(model, photos, game="preserve", config=config)
    x = reference.input.to(device_)
    e = reference.explanation.to(device_)
    targets = reference.target.to(device_)
    decisions = {"fp32": _filter_decisions(model.module, x, e)}
    lines = [
        f"Mixed precision vs float32: default model ({model.name}), {len(photos)} bundled photos in one batch, "
        f"preserve, defense on, {steps} steps, {device_name(device_)}, torch {torch.__version__}.",
        "",
        "| precision | filter decisions changed | blocked units (fp32: {:.2%}) | mean abs mask difference "
        "| p(e) float32 run | p(e) of this run, re-scored in float32 | defended step (s) |".format(
            _blocked(decisions["fp32"])
        ),
        "|---|---:|---:|---:|---|---|---:|",
    ]
    with frozen(model.module):
        fp32_step = _eager_step_time(model.module, x, device_)
    p32 = ", ".join(f"{p:.3f}" for p in reference.prob_explanation.tolist())
    lines.append(f"| fp32 | - | {_blocked(decisions['fp32']):.2%} | - | {p32} | {p32} | {fp32_step:.4f} |")
    for name in dtypes:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[name]
        wrapped = AutocastModule(model.module, dtype)
        try:
            decisions[name] = _filter_decisions(wrapped, x, e)
            mixed_model = replace(model, module=wrapped)
            result = explain(mixed_model, photos, game="preserve", config=config)
        except RuntimeError as exc:  # e.g. a dtype the device cannot autocast to
            lines.append(f"| {name} | not supported here: {str(exc).splitlines()[0]} | | | | | |")
            continue
        changed = sum(int((a != b).sum()) for a, b in zip(decisions["fp32"], decisions[name], strict=True))
        units = sum(a.numel() for a in decisions["fp32"])
        with torch.no_grad(), frozen(model.module):
            rescored = torch.softmax(model.module(result.explanation.to(device_)), 1)
        p_rescored = rescored.gather(1, targets[:, None])[:, 0].tolist()
        with frozen(model.module):
            step = _eager_step_time(wrapped, x, device_)
        lines.append(
            f"| {name} | {changed / units:.3%} | {_blocked(decisions[name]):.2%} | "
            f"{float((result.mask - reference.mask).abs().mean()):.4f} | {p32} | "
            f"{', '.join(f'{p:.3f}' for p in p_rescored)} | {step:.4f} |"
        )
    return "\n".join(lines)


def _eager_step_time(module: nn.Module, x: torch.Tensor, device: torch.device) -> float:
    """Median seconds of a defended FGVis step without a CUDA graph."""
    step = _FGVisStep(module, x, defense=True, cuda_graph=False)
    return _interleaved_median_times({"on": step}, 10, device)["on"]


def _filter_decisions(module: nn.Module, x: torch.Tensor, e: torch.Tensor) -> list[torch.Tensor]:
    """Per activation call, the defense's pass (1) / block (0) decision for every unit of ``e`` given
    the bounds recorded on ``x`` (copies: the filter reuses its buffers)."""
    activation_filter = ActivationFilter()
    with frozen(module):
        with torch.no_grad(), activation_filter.recording(module):
            module(x)
        with activation_filter.filtering(module):
            module(e.clone().requires_grad_(True))
    return activation_filter.decisions()


def _blocked(decisions: list[torch.Tensor]) -> float:
    return 1.0 - sum(int(d.sum()) for d in decisions) / sum(d.numel() for d in decisions)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "bare":  # the child of clean_bare_seconds
        request = json.loads(sys.argv[2])
        threads.configure()
        seconds = bare_seconds(request["model"], request["batch"], request["repeats"], request["device"])
        print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads()}))
    else:
        print(run_speed_benchmark())
