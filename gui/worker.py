"""The one thread that touches the model: loads models and images, predicts, and runs FGVis jobs.

The GUI talks to :class:`Worker` through thread-safe ``submit_*`` methods and listens to its signals
(delivered on the GUI thread by Qt's queued connections). Only copies of numpy arrays and plain
records cross threads. While a job or batch runs, light requests (open an image, predict, export, open a
session) are served between optimisation steps so that none of them waits for a long run; heavy ones
(jobs, batches, model loads, device changes) run one at a time in submission order.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import QObject, QThread, Signal, Slot

import engine
from engine import ClassifierModel, FGVisConfig, FGVisError, Prediction, StepState
from engine.colormaps import DEFAULT_SCALE
from engine.core import allocator
from engine.models.loading import resolve_device, sha256_of
from engine.results.batch import run_batch
from engine.results.export import export_record
from engine.results.session import load_session, source_problem

from . import __version__
from .layers import to_argb32
from .records import ImageRecord, JobProgress, JobSpec, ModelInfo, ModelSpec, ResultRecord, next_id

log = logging.getLogger(__name__)

#: Most progress reports per second sent to the GUI (each carries a small preview).
PROGRESS_RATE_HZ = 5.0


@dataclass(frozen=True)
class _LoadImage:
    path: Path
    image_id: int


@dataclass(frozen=True)
class _Predict:
    image_id: int
    pixels: np.ndarray


@dataclass(frozen=True)
class _LoadModel:
    spec: ModelSpec
    device: str


@dataclass(frozen=True)
class _SetDevice:
    device: str


@dataclass(frozen=True)
class _RunJob:
    job: JobSpec


@dataclass(frozen=True)
class _Export:
    result: ResultRecord
    out_dir: Path
    stem: str
    overlay: np.ndarray | None
    colormap: str
    scale: str
    overwrite: bool


@dataclass(frozen=True)
class _Batch:
    batch_id: int
    input_dir: Path
    out_dir: Path
    targets: str
    games: tuple[str, ...]
    defense: bool
    config: FGVisConfig
    overwrite: bool
    engine: str = "local"  # or "ray"
    address: str | None = None


@dataclass(frozen=True)
class _OpenSession:
    path: Path


class Worker(QObject):
    """Owns the classifier; every method below except ``submit_*``/``cancel``/``shutdown`` runs in the
    worker thread.

    Signals
    -------
    image_loaded(ImageRecord), image_failed(str path, str message)
    predictions_ready(int image_id, int generation, list[Prediction], tuple crop_box, probabilities)
    (``probabilities``: ``(num_classes,)`` float32, every class on the model's input crop)
    model_loaded(ModelInfo), model_failed(str message)
    job_started(int job_id), job_progress(JobProgress), job_finished(ResultRecord),
    job_failed(int job_id, str message)
    Order per job: ``job_started``, zero or more ``job_progress``, then exactly one of
    ``job_finished`` (also when cancelled: the result is marked) or ``job_failed``.
    """

    image_loaded = Signal(object)
    image_failed = Signal(str, str)
    predictions_ready = Signal(int, int, object, object, object)
    model_loaded = Signal(object)
    model_failed = Signal(str)
    job_started = Signal(int)
    job_progress = Signal(object)
    job_finished = Signal(object)
    job_failed = Signal(int, str)
    export_done = Signal(object, object)  # ResultRecord (prob_rescored filled in), dict of paths
    export_failed = Signal(str)
    batch_progress = Signal(int, object)  # batch id, engine.results.batch.BatchProgress
    batch_step = Signal(int, int, int)  # batch id, step, total of the running optimisation
    batch_finished = Signal(int, object)  # batch id, engine.results.batch.BatchSummary
    batch_failed = Signal(int, str)
    session_loaded = Signal(object, object, object, object)  # list[ImageRecord], view, problems, list[ReviewNotes]
    session_failed = Signal(str)
    _wake = Signal()

    def __init__(self, model: ClassifierModel | None = None) -> None:
        super().__init__()
        self._model = model
        self._model_spec: ModelSpec | None = None  # the files the model came from (None: handed in ready)
        self._generation = 0 if model is not None else -1
        # Reference passes of the last images explained (jobs on the same image reuse them).
        self.reference_cache = engine.ReferenceCache(size=2)
        self._lock = threading.Lock()
        self._light: collections.deque = collections.deque()
        self._heavy: collections.deque = collections.deque()
        self._cancel_ids: set[int] = set()
        self._shutting_down = threading.Event()
        self._wake.connect(self._drain)

    # ----------------------------------------------------------------- called from the GUI thread
    def submit_load_image(self, path: Path, image_id: int) -> None:
        self._submit(self._light, _LoadImage(Path(path), image_id))

    def submit_predict(self, image_id: int, pixels: np.ndarray) -> None:
        self._submit(self._light, _Predict(image_id, pixels))

    def submit_load_model(self, spec: ModelSpec, device: str) -> None:
        self._submit(self._heavy, _LoadModel(spec, device))

    def submit_set_device(self, device: str) -> None:
        self._submit(self._heavy, _SetDevice(device))

    def submit_job(self, job: JobSpec) -> None:
        self._submit(self._heavy, _RunJob(job))

    def submit_export(
        self,
        result: ResultRecord,
        out_dir: Path,
        stem: str,
        *,
        overlay=None,
        colormap="inferno",
        scale=DEFAULT_SCALE,
        overwrite=False,
    ) -> None:
        # Light: an export (and its one re-scoring pass) is served between the steps of a running job or batch.
        self._submit(self._light, _Export(result, Path(out_dir), stem, overlay, colormap, scale, overwrite))

    def submit_batch(
        self,
        batch_id: int,
        input_dir: Path,
        out_dir: Path,
        *,
        targets: str,
        games,
        defense: bool,
        config: FGVisConfig,
        overwrite: bool = False,
        engine: str = "local",
        address: str | None = None,
    ) -> None:
        """Queue a batch; ``engine="ray"`` runs it on Ray (``address`` as for ``fgvis batch --address``)."""
        self._submit(
            self._heavy,
            _Batch(
                batch_id,
                Path(input_dir),
                Path(out_dir),
                targets,
                tuple(games),
                defense,
                config,
                overwrite,
                engine,
                address,
            ),
        )

    def submit_open_session(self, path: Path) -> None:
        self._submit(self._light, _OpenSession(Path(path)))

    def cancel(self, job_id: int) -> None:
        """Stop job ``job_id`` within one optimisation step (or skip it if it has not started)."""
        with self._lock:
            self._cancel_ids.add(job_id)

    def shutdown(self) -> None:
        """Cancel everything; pending work is dropped. Call before quitting the thread."""
        self._shutting_down.set()
        with self._lock:
            self._light.clear()
            self._heavy.clear()

    def _submit(self, queue: collections.deque, task) -> None:
        with self._lock:
            queue.append(task)
        self._wake.emit()

    # ---------------------------------------------------------------- the worker thread
    @Slot()
    def _drain(self) -> None:
        while not self._shutting_down.is_set():
            self._serve_light()
            with self._lock:
                task = self._heavy.popleft() if self._heavy else None
            if task is None:
                return
            self._do(task)

    def _serve_light(self) -> None:
        while not self._shutting_down.is_set():
            with self._lock:
                task = self._light.popleft() if self._light else None
            if task is None:
                return
            self._do(task)

    def _do(self, task) -> None:
        handler, report_failure = {
            _LoadImage: (self._load_image, lambda message: self.image_failed.emit(str(task.path), message)),
            _Predict: (self._predict, None),
            _LoadModel: (self._load_model, self.model_failed.emit),
            _SetDevice: (self._set_device, self.model_failed.emit),
            _RunJob: (self._run_job, lambda message: self.job_failed.emit(task.job.id, message)),
            _Export: (self._export, self.export_failed.emit),
            _Batch: (self._batch, lambda message: self.batch_failed.emit(task.batch_id, message)),
            _OpenSession: (self._open_session, self.session_failed.emit),
        }[type(task)]
        try:
            handler(task)
        except Exception:  # a bug, not bad input: keep the thread alive and tell the user
            log.exception("worker task %r failed", task)
            if report_failure is not None:
                report_failure(f"Internal error while handling {type(task).__name__.lstrip('_')}: see the log file.")
        finally:
            if isinstance(task, _RunJob | _Batch):
                allocator.release()  # memory the run freed goes back to the system between runs

    def _load_image(self, task: _LoadImage) -> None:
        try:
            image = engine.load_image(task.path)
        except FGVisError as exc:
            self.image_failed.emit(str(task.path), str(exc))
            return
        pixels = np.array(image.convert("RGB"), dtype=np.uint8)
        record = ImageRecord(
            task.image_id, task.path, task.path.name, pixels, display=to_argb32(pixels), sha256=sha256_of(task.path)
        )
        self.image_loaded.emit(record)

    def _predict(self, task: _Predict) -> None:
        if self._model is None:
            return
        tensor, geometry = self._model.preprocess(task.pixels)
        probabilities = self._model.probabilities(tensor)[0].float().cpu().numpy()
        order = np.argsort(-probabilities, kind="stable")[:5]
        predictions = [Prediction(int(i), self._model.label(int(i)), float(probabilities[i])) for i in order]
        self.predictions_ready.emit(task.image_id, self._generation, predictions, geometry.crop_box, probabilities)

    def _load_model(self, task: _LoadModel) -> None:
        spec = task.spec
        try:
            model = engine.load_model(
                spec.name,
                weights=spec.weights,
                torchscript=spec.torchscript,
                num_classes=spec.num_classes,
                labels=spec.labels,
            )
            resolve_device(task.device, model)
        except FGVisError as exc:
            self.model_failed.emit(_with_dialog_hint(exc))
            return
        self._model = model
        self._model_spec = spec
        self._generation += 1
        self.reference_cache.clear()
        self.model_loaded.emit(self._info())

    def _set_device(self, task: _SetDevice) -> None:
        if self._model is None:  # the model loaded next is placed by its own request
            return
        try:
            resolve_device(task.device, self._model)
        except FGVisError as exc:
            self.model_failed.emit(str(exc))
            return
        self.reference_cache.clear()
        self.model_loaded.emit(self._info())

    def _info(self) -> ModelInfo:
        model = self._model
        scripted = isinstance(model.module, torch.jit.ScriptModule)
        return ModelInfo(
            model.name,
            list(model.labels),
            model.weights_sha256,
            str(model.device),
            model.input_size,
            scripted,
            self._generation,
        )

    def _run_job(self, task: _RunJob) -> None:
        job = task.job
        with self._lock:
            skipped = job.id in self._cancel_ids
        if skipped or self._model is None:
            self.job_failed.emit(job.id, "cancelled before it started" if skipped else "no model is loaded")
            return
        self.job_started.emit(job.id)
        started = time.perf_counter()

        def on_step(state: StepState) -> None:
            # The engine computes a preview at most PROGRESS_RATE_HZ times a second: report those steps.
            if state.preview is not None or state.step == state.total:
                preview = state.preview[0].copy() if state.preview is not None else None
                self.job_progress.emit(
                    JobProgress(
                        job.id,
                        state.step,
                        state.total,
                        float(state.target_prob[0]),
                        float(state.mask_mean[0]),
                        time.perf_counter() - started,
                        preview,
                    )
                )
            self._serve_light()

        def should_stop() -> bool:
            with self._lock:
                return job.id in self._cancel_ids or self._shutting_down.is_set()

        config = replace(job.config, device=str(self._model.device), preview_rate_hz=PROGRESS_RATE_HZ)
        try:
            result = engine.explain(
                self._model,
                job.pixels,
                job.target,
                game=job.game,
                defense=job.defense,
                config=config,
                on_step=on_step,
                should_stop=should_stop,
                cache=self.reference_cache,
            )
        except FGVisError as exc:
            self.job_failed.emit(job.id, str(exc))
            return
        finally:
            with self._lock:
                self._cancel_ids.discard(job.id)
        image_path = str(job.image_path) if job.image_path else None
        record = ResultRecord.from_explanation(
            result,
            0,
            self._model,
            image_name=job.image_name,
            image_path=image_path,
            image_sha256=job.image_sha256,
            id=next_id(),
            job=job,
        )
        self.job_finished.emit(record)

    def _export(self, task: _Export) -> None:
        try:
            paths = export_record(
                task.result,
                task.out_dir,
                task.stem,
                model=self._model,
                colormap=task.colormap,
                scale=task.scale,
                overlay=task.overlay,
                overwrite=task.overwrite,
                extra={"app_version": __version__},
            )
        except FGVisError as exc:
            self.export_failed.emit(str(exc))
            return
        self.export_done.emit(task.result, paths)

    def _batch(self, task: _Batch) -> None:
        if self._model is None:
            self.batch_failed.emit(task.batch_id, "no model is loaded")
            return
        last = [0.0]

        def on_step(state: StepState) -> None:
            now = time.perf_counter()
            if now - last[0] >= 1.0 / PROGRESS_RATE_HZ or state.step == state.total:
                last[0] = now
                self.batch_step.emit(task.batch_id, state.step, state.total)
            self._serve_light()  # open images, predict and export while a batch runs

        def should_stop() -> bool:
            with self._lock:
                return task.batch_id in self._cancel_ids or self._shutting_down.is_set()

        options = {
            "targets": task.targets,
            "games": task.games,
            "defense": task.defense,
            "overwrite": task.overwrite,
            "app_version": __version__,
            "should_stop": should_stop,
            "on_progress": lambda report: self.batch_progress.emit(task.batch_id, report),
        }
        try:
            if task.engine == "ray":
                summary = self._batch_on_ray(task, options)
            else:
                summary = run_batch(
                    self._model,
                    task.input_dir,
                    task.out_dir,
                    on_step=on_step,
                    config=replace(task.config, device=str(self._model.device)),
                    **options,
                )
        except (FGVisError, OSError) as exc:
            self.batch_failed.emit(task.batch_id, str(exc))
            return
        finally:
            with self._lock:
                self._cancel_ids.discard(task.batch_id)
        self.batch_finished.emit(task.batch_id, summary)

    def _batch_on_ray(self, task: _Batch, options: dict):
        """The batch on Ray: every worker loads the model from the files the current one came from."""
        from engine.results.cluster import ModelSource, run_batch_on_ray

        spec = self._model_spec
        if spec is None:
            raise engine.ConfigError(
                "this model was not loaded from files, so Ray workers cannot load it: "
                "use File > Load model, or run the batch on this machine"
            )
        source = ModelSource(
            spec.name,
            str(spec.weights) if spec.weights else None,
            str(spec.torchscript) if spec.torchscript else None,
            spec.num_classes,
            str(spec.labels) if spec.labels else None,
        )
        config = replace(task.config, device=None)
        return run_batch_on_ray(source, task.input_dir, task.out_dir, address=task.address, config=config, **options)

    def _open_session(self, task: _OpenSession) -> None:
        try:
            session = load_session(task.path)
        except FGVisError as exc:
            self.session_failed.emit(str(exc))
            return
        images, problems = [], []
        for entry in session.images:
            problem = source_problem(entry)
            pixels = display = None
            if problem is None or "changed" in problem:
                try:
                    pixels = np.array(engine.load_image(entry.path).convert("RGB"), dtype=np.uint8)
                except FGVisError as exc:
                    problem = f"{entry.name}: {exc}"
            if problem:
                problems.append(problem)
            scale = (1.0, 1.0)
            if pixels is None:
                pixels, scale = _placeholder(entry)
                display = np.full(pixels.shape[:2], 0xFF808080, np.uint32)  # to_argb32 of the grey, no temporaries
                if scale != (1.0, 1.0):
                    problems.append(
                        f"{entry.name}: shown on a grey stand-in at {min(scale):.0%} of the photo's size "
                        f"(the results' crop boxes are scaled to match)"
                    )
            image = ImageRecord(
                next_id(),
                Path(entry.path) if entry.path else None,
                entry.name,
                pixels,
                display=to_argb32(pixels) if display is None else display,
                sha256=entry.sha256,
                notes=entry.notes,
            )
            for record in entry.results:
                job = JobSpec(
                    next_id(),
                    image.id,
                    image.name,
                    pixels,
                    record.target,
                    record.target_label,
                    record.game,
                    record.defense,
                    record.config,
                    image_path=image.path,
                    image_sha256=image.sha256,
                )
                result = ResultRecord.from_record(record, job)
                if scale != (1.0, 1.0) and result.crop_box is not None:
                    left, top, right, bottom = result.crop_box
                    result.crop_box = (left * scale[0], top * scale[1], right * scale[0], bottom * scale[1])
                image.results.append(result)
            images.append(image)
        self.session_loaded.emit(images, session.view, problems, session.reviews)


#: What to change in File > Load model… for the engine's ``ModelLoadError.option``.
DIALOG_HINTS = {
    "num_classes": "In Load model, set Classes{value}.",
    "labels": "In Load model, choose a class-names file with one name per line (or none).",
    "weights": "In Load model, choose the architecture the weights were saved from and its state_dict file.",
    "torchscript": 'In Load model, choose "TorchScript file" for this file.',
    "allow_pickle": "The app itself never unpickles a file (it can run code): save the model's state_dict, "
    "or export it as TorchScript, and load that here.",
}


def _with_dialog_hint(exc: FGVisError) -> str:
    """The engine's message and, for a bad model file, what to change in the Load model dialog."""
    hint = DIALOG_HINTS.get(getattr(exc, "option", None) or "", "")
    value = getattr(exc, "value", None)
    hint = hint.format(value=f" to {value}" if value is not None else "")
    return f"{exc}\n\n{hint}" if hint else str(exc)


def _placeholder(entry) -> tuple[np.ndarray, tuple[float, float]]:
    """A grey stand-in for a photo that is gone and the ``(x, y)`` scale of the results' crop boxes on it:
    the size the session's (validated) crop boxes span, at most ``engine.results.session.MAX_PLACEHOLDER_PIXELS``
    (scaled down beyond, so that a forged or huge crop box cannot allocate gigabytes)."""
    from engine.results.session import placeholder_size

    width, height, scale_x, scale_y = placeholder_size(entry)
    return np.full((height, width, 3), 128, np.uint8), (scale_x, scale_y)


def available_devices() -> list[tuple[str, str]]:
    """``(device string, display name)`` for the CPU and each CUDA device."""
    devices = [("cpu", "CPU")]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            devices.append((f"cuda:{index}", f"GPU {index}: {torch.cuda.get_device_name(index)}"))
    return devices


class WorkerThread:
    """A :class:`Worker` living in its own ``QThread``; ``stop()`` cancels and waits for it to end."""

    def __init__(self, model: ClassifierModel | None = None) -> None:
        self.thread = QThread()
        self.thread.setObjectName("fgvis-worker")
        self.worker = Worker(model)
        self.worker.moveToThread(self.thread)
        self.thread.start()

    def stop(self) -> None:
        self.worker.shutdown()
        self.thread.quit()
        self.thread.wait()
        log.info("worker thread stopped")
