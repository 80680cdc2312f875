"""The ``fgvis`` command line: ``predict``, ``explain``, ``batch`` and ``bench`` (same engine as the GUI).

Exit codes: 0 done, 1 a file could not be written (or would be overwritten without ``--overwrite``),
2 bad input (image, model, target, option; for ``batch``: some files could not be read, the others are
done), 130 interrupted with Ctrl-C (partial results are still written, marked ``"cancelled": true``; a
second Ctrl-C aborts at once, leaving no partial file).

Every option is checked before anything is read or written: a bad value ends the command with one line
naming the option (argparse's ``error: argument --steps: ...``) and exit 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.colormaps import COLORMAPS, DEFAULT_SCALE, SCALES
from engine.core import threads
from engine.core.explanation import GAMES, OPTIMIZERS, REFERENCES, Explanation, FGVisConfig, StepState
from engine.errors import FGVisError, ModelLoadError
from engine.evaluation.baselines import METHODS
from engine.models.loading import DEFAULT_MODEL, ClassifierModel
from engine.models.resources import sample_images
from engine.results.batch import images_in, unique_stems
from engine.results.cluster import ModelSource
from engine.results.export import ExportError, existing_files, export_explained

EXIT_WRITE_ERROR = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if args.threads is not None:
        os.environ[threads.ENV] = str(args.threads)  # also for child processes (benchmarks, Ray workers)
    try:
        threads.configure()
        return args.handler(args)
    except KeyboardInterrupt:  # the second Ctrl-C: stop now (files being written are removed, not left half)
        print("\naborted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_WRITE_ERROR
    except FGVisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        hint = _hint(exc)
        if hint:
            print(f"hint: {hint}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"error: cannot write results: {exc}", file=sys.stderr)
        return EXIT_WRITE_ERROR


#: The command-line flag for each ``engine.load_model`` parameter a :class:`ModelLoadError` can point at (the
#: engine's messages name no flags; the hint line adds them).
MODEL_FLAGS = {
    "num_classes": "--num-classes",
    "allow_pickle": "--trust-pickle",
    "weights": "--weights",
    "torchscript": "--torchscript",
    "labels": "--labels",
}


def _hint(exc: FGVisError) -> str:
    """The flag that fixes a model error, when there is one (``""`` otherwise)."""
    if not isinstance(exc, ModelLoadError) or exc.option not in MODEL_FLAGS:
        return ""
    flag = MODEL_FLAGS[exc.option]
    if exc.option == "allow_pickle":
        return f"{flag} opens it, only for a file you trust (unpickling runs code from the file)"
    if exc.option == "num_classes":
        return f"{flag} {exc.value if exc.value is not None else 'N'}"
    if exc.option == "labels":
        return f"{flag} FILE: a text file with one class name per line"
    return f"{flag} FILE" + (" with --model ARCHITECTURE" if exc.option == "weights" else "")


#: Seeds torch accepts.
MAX_SEED = 2**63 - 1


def _integer(low: int, high: int | None = None):
    """An argparse type: a decimal integer in ``low .. high``."""

    def parse(text: str) -> int:
        text = text.strip()
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number")
        value = int(text)
        if value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise argparse.ArgumentTypeError(f"{value} is out of range: give a whole number {bounds}")
        return value

    return parse


def _number(low: float, *, strict: bool):
    """An argparse type: a finite float ``> low`` (``strict``) or ``>= low``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < low or (strict and value == low):
            relation = ">" if strict else ">="
            raise argparse.ArgumentTypeError(f"{text} is out of range: give a finite number {relation} {low:g}")
        return value

    return parse


def _device(text: str) -> str:
    """An argparse type: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (whether it exists is checked on use)."""
    value = text.strip().lower()
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device this app runs on: give auto, cpu, cuda or cuda:N")
    return value


POSITIVE = _integer(1)
NON_NEGATIVE = _integer(0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fgvis", description="FGVis explanations of CNN image classifiers.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    parser.add_argument(
        "--threads",
        type=POSITIVE,
        default=None,
        help="CPU threads for the model (default: $FGVIS_THREADS, else the cores this process may use)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="top-k classes of images")
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    predict.add_argument("--top", type=POSITIVE, default=5, help="how many classes (default 5)")
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_model_options(predict)
    predict.set_defaults(handler=_predict)

    explain = commands.add_parser("explain", help="explain the model's decision on images")
    explain.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    explain.add_argument("--out", type=Path, required=True, help="folder for the results (created if needed)")
    explain.add_argument("--target", default="top1", help='"top1" (default), a class index or a class name')
    _add_method_options(explain)
    _add_model_options(explain)
    explain.set_defaults(handler=_explain)

    batch = commands.add_parser("batch", help="explain every image of a folder (resumable), with an index")
    batch.add_argument("input_dir", type=Path, metavar="INPUT_DIR")
    batch.add_argument("--out", type=Path, required=True, help="folder for the results (created if needed)")
    batch.add_argument(
        "--targets", default="top1", help='"top1" (default), "top3", "topK", or a comma-separated list of classes'
    )
    _add_method_options(batch)
    _add_model_options(batch)
    cluster = batch.add_argument_group("cluster (pip install -e '.[cluster]')")
    cluster.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process (default); ray: a Ray instance or cluster (Ray Data)",
    )
    cluster.add_argument(
        "--address",
        default=None,
        help="with --engine ray: auto (the cluster this machine is in), HOST:PORT or "
        "ray://HOST:PORT; none: a local Ray instance sized to this machine",
    )
    cluster.add_argument("--workers", type=POSITIVE, default=None, help="workers explaining at once (default: fit)")
    cluster.add_argument(
        "--gpus-per-worker",
        type=_number(0, strict=False),
        default=0.0,
        help="GPUs per worker (default 0: CPU); a worker with a GPU explains on it",
    )
    cluster.add_argument("--cpus-per-worker", type=POSITIVE, default=1, help="CPUs (and torch threads) per worker")
    batch.set_defaults(handler=_batch)

    analyze = commands.add_parser(
        "analyze", help="dataset review of a batch results folder: clusters of evidence maps per class (SpRAy)"
    )
    analyze.add_argument("results_dir", type=Path, metavar="RESULTS_DIR", help="a folder fgvis batch wrote")
    analyze.add_argument("--classes", nargs="+", metavar="CLASS", help="class indices or names (default: all)")
    analyze.add_argument("--game", choices=GAMES, default="preserve", help="whose maps (default preserve)")
    analyze.add_argument(
        "--clusters", type=_clusters, default="auto", help="auto (the eigengap, default) or a number of clusters"
    )
    analyze.add_argument("--max-clusters", type=POSITIVE, default=8, help="most clusters auto may choose (8)")
    analyze.add_argument("--neighbours", type=POSITIVE, help="neighbours per map in the graph (default: 2 ln N, 5-20)")
    analyze.add_argument("--size", type=_integer(2, 256), default=16, help="maps are compared at SIZE x SIZE (16)")
    analyze.add_argument("--channels", action="store_true", help="compare the masks per colour channel")
    analyze.add_argument(
        "--embedding",
        choices=["tsne", "spectral", "umap"],
        default="tsne",
        help="2-D picture of the maps (default tsne; umap needs umap-learn)",
    )
    analyze.add_argument("--seed", type=_integer(0, 2**32 - 1), default=0)
    analyze.add_argument("--out", type=Path, help="folder for the analysis and report (default RESULTS_DIR/analysis)")
    analyze.set_defaults(handler=_analyze)

    defaults = FGVisConfig()
    bench = commands.add_parser("bench", help="benchmarks that print tables")
    bench_commands = bench.add_subparsers(dest="bench", required=True)
    speed = bench_commands.add_parser("speed", help="time per optimisation step vs a bare forward+backward")
    speed.add_argument("--batch-sizes", type=POSITIVE, nargs="+", default=[1, 4, 16])
    speed.add_argument("--repeats", type=POSITIVE, default=10, help="timed steps per measurement")
    speed.add_argument(
        "--call-repeats", type=POSITIVE, default=3, help="whole explain() calls of each length (medians are used)"
    )
    speed.add_argument("--device", type=_device, default="auto")
    speed.add_argument(
        "--contention", action="store_true", help="also time an explanation while another process keeps every core busy"
    )
    speed.set_defaults(handler=_bench_speed)
    games = bench_commands.add_parser("defaults", help="both games on the bundled photos with the default model")
    games.add_argument("--steps", type=POSITIVE, default=defaults.steps)
    games.add_argument("--lr", type=_number(0, strict=True), default=None)
    games.add_argument("--lambda-init", type=_number(0, strict=True), default=defaults.lambda_init)
    games.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer)
    games.add_argument("--device", type=_device, default="auto")
    games.set_defaults(handler=_bench_defaults)
    early = bench_commands.add_parser("early-stop", help="early stopping vs the fixed step budget, per bundled photo")
    early.add_argument("--steps", type=POSITIVE, default=defaults.steps)
    early.add_argument("--patience", type=NON_NEGATIVE, default=defaults.patience)
    early.add_argument("--device", type=_device, default="auto")
    early.add_argument("--images", type=Path, help="folder of photos to use instead of the bundled ones")
    early.set_defaults(handler=_bench_early_stop)
    seconds = bench_commands.add_parser(
        "seconds", help="seconds to a finished explanation per photo, both games, defaults (median over a folder)"
    )
    seconds.add_argument("--images", type=Path, help="folder of photos (default: the bundled ones)")
    seconds.add_argument("--device", type=_device, default="auto")
    seconds.set_defaults(handler=_bench_seconds)
    throughput = bench_commands.add_parser("throughput", help="explanations per second per model and batch size")
    throughput.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet50", "vgg16"])
    throughput.add_argument("--batch-sizes", type=POSITIVE, nargs="+", default=[1, 4, 16, 64])
    throughput.add_argument("--repeats", type=POSITIVE, default=10, help="timed steps per measurement")
    throughput.add_argument("--device", type=_device, default="auto")
    throughput.add_argument("--no-cuda-graph", action="store_true", help="time the eager step (CUDA)")
    throughput.set_defaults(handler=_bench_throughput)
    precision = bench_commands.add_parser("precision", help="mixed precision (autocast) against float32")
    precision.add_argument("--steps", type=POSITIVE, default=100)
    precision.add_argument("--dtypes", nargs="+", choices=["bf16", "fp16"], default=["bf16", "fp16"])
    precision.add_argument("--device", type=_device, default="auto")
    precision.set_defaults(handler=_bench_precision)
    profile = bench_commands.add_parser("profile", help="where a defended step spends its time, for one model")
    profile.add_argument("--model", default="vgg16", help="vgg16 (default), resnet50, efficientnet_lite0, ...")
    profile.add_argument("--batch-sizes", type=POSITIVE, nargs="+", default=[1, 16])
    profile.add_argument("--repeats", type=POSITIVE, default=10, help="timed steps per measurement")
    profile.add_argument("--top", type=POSITIVE, default=12, help="operators listed per profile")
    profile.add_argument("--device", type=_device, default="auto")
    profile.set_defaults(handler=_bench_profile)
    cluster_bench = bench_commands.add_parser(
        "cluster", help="explanations per second: the local batch against Ray with 1 and 2 workers (needs [cluster])"
    )
    cluster_bench.add_argument("--images", type=Path, required=True, help="folder of photos")
    cluster_bench.add_argument("--count", type=POSITIVE, default=32, help="images to use (default 32)")
    cluster_bench.add_argument("--workers", type=POSITIVE, nargs="+", default=[1, 2])
    cluster_bench.add_argument("--steps", type=POSITIVE, default=defaults.steps)
    cluster_bench.add_argument("--batch-size", type=POSITIVE, default=4)
    cluster_bench.add_argument("--model", default=DEFAULT_MODEL)
    cluster_bench.set_defaults(handler=_bench_cluster)
    quality = bench_commands.add_parser(
        "quality", help="faithfulness, localisation, sanity and sparsity of FGVis and the baseline methods"
    )
    quality.add_argument(
        "--model",
        default="synthetic_shapes",
        help="synthetic_shapes (ground-truth evidence; default), synthetic_clutter (the harder ground-truth "
        "set) or a model name such as efficientnet_lite0",
    )
    quality.add_argument("--images", type=Path, help="folder of images (default: generated shapes / bundled photos)")
    quality.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    quality.add_argument("--out", type=Path, help="folder for quality.md/.csv/.json and the curve plots")
    quality.add_argument("--count", type=POSITIVE, default=32, help="images to use (default 32)")
    quality.add_argument("--randomisation-items", type=NON_NEGATIVE, default=4)
    quality.add_argument("--steps", type=POSITIVE, default=defaults.steps, help="FGVis step budget")
    quality.add_argument("--mp-steps", type=POSITIVE, default=300, help="Meaningful Perturbation iterations")
    quality.add_argument("--reference", choices=["blur", "zero"], default="blur")
    quality.set_defaults(handler=_bench_quality)
    analysis = bench_commands.add_parser(
        "analysis", help="the planted Clever-Hans set: does the dataset review find and flag the marked images?"
    )
    analysis.add_argument("--out", type=Path, help="folder for the batch, the analyses and analysis.md/.json")
    analysis.add_argument("--per-class", type=_integer(4), default=12, help="held-out images of each other class")
    analysis.add_argument(
        "--planted", type=_integer(4), default=60, help="held-out images of the planted class (a third of them marked)"
    )
    analysis.add_argument("--games", nargs="+", choices=GAMES, default=["preserve", "delete"])
    analysis.add_argument("--seed", type=_integer(0, 2**32 - 1), default=1001, help="of the held-out images (1001)")
    analysis.add_argument("--steps", type=POSITIVE, default=defaults.steps, help="FGVis step budget")
    analysis.add_argument(
        "--scale",
        type=POSITIVE,
        nargs="*",
        metavar="N",
        help="also time the analysis on N synthetic maps (e.g. --scale 1000 10000)",
    )
    analysis.add_argument("--scale-only", action="store_true", help="only the --scale measurement")
    analysis.add_argument("--device", type=_device, default="auto")
    analysis.set_defaults(handler=_bench_analysis)
    return parser


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    defaults = FGVisConfig()
    parser.add_argument("--game", choices=(*GAMES, "both"), default="preserve")
    parser.add_argument("--no-defense", action="store_true", help="turn off the adversarial-evidence defense")
    parser.add_argument("--steps", type=POSITIVE, default=defaults.steps, help=f"iteration budget ({defaults.steps})")
    parser.add_argument("--lr", type=_number(0, strict=True), default=None, help="learning rate (default: 0.05)")
    parser.add_argument(
        "--lambda", dest="lambda_", type=_number(0, strict=False), default=None, help="fixed lambda (default: auto)"
    )
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer)
    parser.add_argument("--reference", choices=REFERENCES, default=defaults.reference)
    parser.add_argument(
        "--blur-sigma",
        type=_number(0, strict=True),
        default=defaults.blur_sigma,
        help=f"blur of the 'blur' reference in pixels ({defaults.blur_sigma:g}); larger removes more of the class",
    )
    parser.add_argument(
        "--no-binarize", action="store_true", help="keep the soft mask, not the smallest 0/1 mask meeting the goal"
    )
    parser.add_argument(
        "--no-quantize",
        action="store_true",
        help="score and return the explanation in float precision (the paper), not as the 8-bit picture saved",
    )
    parser.add_argument("--seed", type=_integer(0, MAX_SEED), default=defaults.seed)
    parser.add_argument("--batch-size", type=POSITIVE, default=8, help="items optimised together (default 8)")
    parser.add_argument("--colormap", choices=COLORMAPS, default="inferno", help="colormap of the evidence PNG")
    parser.add_argument(
        "--scale",
        choices=SCALES,
        default=DEFAULT_SCALE,
        help="value range of the evidence PNG and overlay: robust (0 .. 99.5th percentile, the "
        "default) or fixed (0 .. 1); the range is written to the JSON",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing result files")


def _config(args) -> FGVisConfig:
    return FGVisConfig(
        steps=args.steps,
        lr=args.lr,
        lambda_=args.lambda_,
        reference=args.reference,
        blur_sigma=args.blur_sigma,
        seed=args.seed,
        device=args.device,
        optimizer=args.optimizer,
        binarize=not args.no_binarize,
        quantize=not args.no_quantize,
    )


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=DEFAULT_MODEL, help=f"{DEFAULT_MODEL} (built in) or a torchvision name")
    group.add_argument("--weights", type=Path, help="state_dict file for --model")
    group.add_argument("--torchscript", type=Path, help="TorchScript classifier file")
    group.add_argument("--num-classes", type=POSITIVE, help="number of classes of --model")
    group.add_argument("--labels", type=Path, help="text file with one class name per line")
    group.add_argument("--trust-pickle", action="store_true", help="allow unpickling (runs code from the file!)")
    group.add_argument("--device", type=_device, default="auto", help="auto (default), cpu, cuda or cuda:N")


def _model_source(args) -> ModelSource:
    """The model the options name, as the arguments of :func:`engine.load_model` (a Ray worker loads it
    from these itself)."""
    return ModelSource(
        args.model,
        _text(args.weights),
        _text(args.torchscript),
        args.num_classes,
        _text(args.labels),
        args.trust_pickle,
    )


def _load(args) -> ClassifierModel:
    return _model_source(args).load()


def _predict(args) -> int:
    model = _load(args)
    report = {}
    for path in args.images:
        report[str(path)] = [p.__dict__ for p in model.predict(path, k=args.top)]
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for path, predictions in report.items():
        print(path)
        for p in predictions:
            print(f"  {p['probability']:7.2%}  {p['index']:4d}  {p['label']}")
    return 0


def _explain(args) -> int:
    from engine.core.fgvis import explain

    model = _load(args)
    config = _config(args)
    games = GAMES if args.game == "both" else (args.game,)
    stems = unique_stems(args.images)
    if not args.overwrite:
        clashes = [p for stem in stems for game in games for p in existing_files(args.out, f"{stem}_{game}")]
        if clashes:
            raise ExportError(
                f"{len(clashes)} result file(s) already exist in {args.out} (e.g. {clashes[0].name}): "
                "use --overwrite or another --out folder"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    previous_handler = signal.signal(signal.SIGINT, _interrupt_handler(stop))
    try:
        for game in games:
            for start in range(0, len(args.images), max(1, args.batch_size)):
                batch = args.images[start : start + args.batch_size]
                progress = _Progress(f"{game} {start + 1}-{start + len(batch)}/{len(args.images)}")
                result = explain(
                    model,
                    [str(p) for p in batch],
                    args.target,
                    game=game,
                    defense=not args.no_defense,
                    config=config,
                    on_step=progress,
                    should_stop=stop.is_set,
                )
                progress.close(result)
                for index, path in enumerate(batch):
                    _write_result(args, model, result, index, path, stems[start + index])
                if result.cancelled:
                    print("interrupted: partial results written, marked cancelled", file=sys.stderr)
                    return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    return 0


def _batch(args) -> int:
    from engine.results.batch import run_batch

    if not args.input_dir.is_dir():
        raise FGVisError(f"{args.input_dir} is not a folder")
    games = GAMES if args.game == "both" else (args.game,)
    stop = threading.Event()
    previous_handler = signal.signal(signal.SIGINT, _interrupt_handler(stop))
    started = time.perf_counter()

    def on_progress(report) -> None:
        elapsed = time.perf_counter() - started
        rate = report.done / elapsed if elapsed > 0 else 0.0
        eta = (report.total - report.done) / rate if rate > 0 else float("nan")
        print(
            f"[{report.done}/{report.total}] {rate:.2f} items/s, ETA {eta:.0f} s | {report.item}: {report.state}",
            file=sys.stderr,
        )

    options = {
        "targets": args.targets,
        "games": games,
        "defense": not args.no_defense,
        "config": _config(args),
        "batch_size": args.batch_size,
        "overwrite": args.overwrite,
        "colormap": args.colormap,
        "scale": args.scale,
        "app_version": _version(),
        "on_progress": on_progress,
        "should_stop": stop.is_set,
    }
    try:
        if args.engine == "ray":
            from engine.results.cluster import run_batch_on_ray

            summary = run_batch_on_ray(
                _model_source(args),
                args.input_dir,
                args.out,
                address=args.address,
                workers=args.workers,
                cpus_per_worker=args.cpus_per_worker,
                gpus_per_worker=args.gpus_per_worker,
                **options,
            )
        else:
            summary = run_batch(_load(args), args.input_dir, args.out, on_step=_Progress("batch"), **options)
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    listed = " (listed in the index with the reason)" if summary.failures else ""
    print(
        f"{len(summary.written)} written, {len(summary.skipped)} already done, {len(summary.failures)} failed"
        f"{listed}; index: {summary.index_files.get('html')}"
    )
    for name, reason in summary.failures:
        print(f"  could not explain {name}: {reason}", file=sys.stderr)
    if summary.ignored:
        print(f"  not images (by their suffix), not looked at: {', '.join(summary.ignored)}", file=sys.stderr)
    for warning in summary.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if summary.cancelled:
        print("interrupted: finished items are kept; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_BAD_INPUT if summary.failures else 0


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("fgvis-studio")
    except metadata.PackageNotFoundError:
        return "unknown"


def _interrupt_handler(stop: threading.Event):
    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after this step (Ctrl-C again to abort)...", file=sys.stderr)

    return handler


def _write_result(args, model: ClassifierModel, result: Explanation, index: int, path: Path, stem: str) -> None:
    record, files = export_explained(
        result,
        index,
        model,
        path,
        args.out,
        f"{stem}_{result.game}",
        colormap=args.colormap,
        scale=args.scale,
        app_version=_version(),
    )
    status = " (cancelled)" if result.cancelled else ""
    print(
        f"{record.image_name}: {result.game} {record.target_label!r} p {record.prob_original:.3f} -> "
        f"{record.prob_explanation:.3f} (re-scored PNG {record.prob_rescored:.3f}), mask mean "
        f"{record.mask_mean:.3f}{status} -> {files['summary']}"
    )


class _Progress:
    """A one-line terminal progress bar fed by ``on_step``."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.started = time.perf_counter()
        self.interactive = sys.stderr.isatty()
        self.last_print = 0.0

    def __call__(self, state: StepState) -> None:
        now = time.perf_counter()
        if now - self.last_print < (0.1 if self.interactive else 5.0) and state.step != state.total:
            return
        self.last_print = now
        fraction = state.step / state.total
        elapsed = now - self.started
        eta = elapsed / fraction - elapsed
        bar = "#" * int(24 * fraction)
        line = (
            f"{self.title} [{bar:<24}] {state.step}/{state.total} p={np.mean(state.target_prob):.3f} "
            f"mask={np.mean(state.mask_mean):.3f} ETA {eta:4.0f}s"
        )
        print(("\r" + line) if self.interactive else line, end="" if self.interactive else "\n", file=sys.stderr)

    def close(self, result: Explanation) -> None:
        if self.interactive:
            print(file=sys.stderr)
        print(f"{self.title}: {result.steps} steps in {result.wall_time_s:.1f} s", file=sys.stderr)
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)


def _bench_speed(args) -> int:
    from engine.evaluation.bench import run_contention_benchmark, run_speed_benchmark

    table = run_speed_benchmark(
        batch_sizes=args.batch_sizes, repeats=args.repeats, device=args.device, call_repeats=args.call_repeats
    )
    print(table)
    if args.contention:
        print()
        print(run_contention_benchmark(device=args.device))
    return 0


def _bench_defaults(args) -> int:
    from engine.evaluation.bench import run_defaults_benchmark

    config = FGVisConfig(steps=args.steps, lr=args.lr, lambda_init=args.lambda_init, optimizer=args.optimizer)
    print(run_defaults_benchmark(config, device=args.device))
    return 0


def _bench_early_stop(args) -> int:
    from engine.evaluation.bench import run_early_stopping_benchmark

    images = images_in(args.images) if args.images is not None else None
    config = FGVisConfig(steps=args.steps, patience=args.patience)
    print(run_early_stopping_benchmark(config, device=args.device, images=images))
    return 0


def _bench_seconds(args) -> int:
    from engine.evaluation.bench import run_seconds_benchmark

    images = images_in(args.images) if args.images is not None else sample_images()
    print(run_seconds_benchmark(images, device=args.device))
    return 0


def _bench_throughput(args) -> int:
    from engine.evaluation.bench import run_throughput_benchmark

    print(
        run_throughput_benchmark(
            args.models, args.batch_sizes, args.repeats, device=args.device, cuda_graph=not args.no_cuda_graph
        )
    )
    return 0


def _bench_precision(args) -> int:
    from engine.evaluation.bench import run_precision_benchmark

    print(run_precision_benchmark(device=args.device, steps=args.steps, dtypes=args.dtypes))
    return 0


def _bench_profile(args) -> int:
    from engine.evaluation.bench import run_profile_benchmark

    print(run_profile_benchmark(args.model, args.batch_sizes, args.repeats, device=args.device, top=args.top))
    return 0


def _bench_cluster(args) -> int:
    from engine.evaluation.cluster_bench import run_cluster_benchmark

    print(
        run_cluster_benchmark(
            args.images,
            source=ModelSource(args.model),
            workers=args.workers,
            count=args.count,
            config=FGVisConfig(steps=args.steps),
            batch_size=args.batch_size,
            log=lambda message: print(message, file=sys.stderr),
        )
    )
    return 0


def _bench_quality(args) -> int:
    from engine.evaluation.suite import run_quality_benchmark

    report = run_quality_benchmark(
        args.model,
        images=args.images,
        methods=args.methods,
        out_dir=args.out,
        count=args.count,
        reference=args.reference,
        randomisation_items=args.randomisation_items,
        config=FGVisConfig(steps=args.steps),
        mp_steps=args.mp_steps,
        log=lambda message: print(message, file=sys.stderr),
    )
    print(report.markdown)
    if report.files:
        print(f"\nwritten: {', '.join(str(p) for p in report.files.values())}", file=sys.stderr)
    return 0


def _clusters(text: str) -> str | int:
    """An argparse type: ``auto`` or a number of clusters (1 or more)."""
    if text.strip().lower() == "auto":
        return "auto"
    return _integer(1)(text)


def _analyze(args) -> int:
    from engine.analysis import analyze, class_summary, write_report

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    result = analyze(
        args.results_dir,
        game=args.game,
        classes=args.classes,
        clusters=args.clusters,
        channels=args.channels,
        feature_size=args.size,
        neighbours=args.neighbours,
        max_clusters=args.max_clusters,
        embedding=args.embedding,
        seed=args.seed,
        out_dir=args.out,
        log=log,
    )
    assert result.folder is not None  # analyze() saved it
    report = write_report(result, result.folder / "report.html", app_version=_version())
    for entry in result.classes:
        print(class_summary(entry))
        for cluster in entry.flagged:
            print(f"  flagged cluster {cluster.index + 1} ({cluster.size} maps): {'; '.join(cluster.reasons)}")
    for row in result.skipped:
        print(f"  skipped {row.get('item') or row.get('image')}: {row['reason']}", file=sys.stderr)
    print(f"analysis: {result.folder}; report: {report} ({result.seconds:.1f} s)")
    return EXIT_BAD_INPUT if result.skipped or any(entry.result is None for entry in result.classes) else 0


def _bench_analysis(args) -> int:
    from engine.analysis.bench import run_analysis_benchmark, run_scale_benchmark

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    if args.scale_only and not args.scale:
        raise FGVisError("--scale-only needs --scale N [N ...]")
    if not args.scale_only:
        report = run_analysis_benchmark(
            out_dir=args.out,
            per_class=args.per_class,
            planted=args.planted,
            games=args.games,
            config=FGVisConfig(steps=args.steps, device=args.device),
            seed=args.seed,
            log=log,
        )
        print(report.markdown)
    if args.scale:
        print(run_scale_benchmark(args.scale, log=log).markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
