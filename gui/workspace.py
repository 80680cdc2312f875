"""The workspace: what the user has open, apart from any window.

Images with their results, the loaded model, the job queue, the batches holding the worker, the
dataset-review notes and the undo stack of deleted results. The main window and its controllers show
and change it; nothing here touches a widget, so sessions, autosave and the queue can be driven and
tested without a window.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from engine.results.session import ReviewNotes, Session, SessionImage

from . import __version__
from .records import ImageRecord, JobProgress, JobSpec, ModelInfo, ResultRecord


@dataclass(eq=False)
class Deletion:
    """Results removed from ``image`` together, with the positions they had (for undo)."""

    image: ImageRecord
    removed: list[tuple[int, ResultRecord]]


class Workspace(QObject):
    """The open images, their results, the model and the queue (GUI thread only).

    Signals
    -------
    image_added(ImageRecord)
        A new image joined ``images`` (not emitted for a file that is already open).
    current_changed(ImageRecord or None)
    result_added(ResultRecord)
        A finished job's result joined its image.
    results_changed(ImageRecord, ResultRecord or None)
        The image's results list changed; the second argument is the result to select.
    model_changed(ModelInfo, bool)
        A model was loaded or moved; ``True`` when it is a new generation (predictions are stale).
    queue_changed()
        A job was queued, started or ended, or a batch started or ended.
    changed()
        Something a session keeps changed (results, notes, exports): time to autosave.
    """

    image_added = Signal(object)
    current_changed = Signal(object)
    result_added = Signal(object)
    results_changed = Signal(object, object)
    model_changed = Signal(object, bool)
    queue_changed = Signal()
    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.images: list[ImageRecord] = []
        self.current: ImageRecord | None = None
        self.model_info: ModelInfo | None = None
        #: Queued and running jobs by id, in the order they were queued.
        self.jobs: dict[int, JobSpec] = {}
        self.running_job: int | None = None
        self.last_progress: JobProgress | None = None
        #: Cluster notes of the dataset reviews, by :func:`review_key`: kept in the session.
        self.reviews: dict[tuple[str, str], ReviewNotes] = {}
        self._batches: set[int] = set()
        self._deleted: list[Deletion] = []

    # ------------------------------------------------------------------ images
    def add_image(self, image: ImageRecord) -> ImageRecord:
        """Add ``image`` unless the same file, unchanged, is open: returns the open record (which keeps its
        results) or ``image``; ``image_added`` only for a new one."""
        same = self.find_open(image)
        if same is not None:
            return same
        self.append_image(image)
        return image

    def append_image(self, image: ImageRecord) -> None:
        """Add ``image`` as it is (a session's records are its own, even of a file that is open)."""
        self.images.append(image)
        self.image_added.emit(image)

    def find_open(self, image: ImageRecord) -> ImageRecord | None:
        """The open record of the same file with the same content (images without a path never match)."""
        if image.path is None:
            return None
        return next((i for i in self.images if i.path == image.path and i.sha256 == image.sha256), None)

    def image(self, image_id: int) -> ImageRecord | None:
        return next((image for image in self.images if image.id == image_id), None)

    def index(self, image: ImageRecord | None) -> int:
        """Position of ``image`` in :attr:`images`; -1 when it is not open."""
        return next((i for i, open_image in enumerate(self.images) if open_image is image), -1)

    def set_current(self, image: ImageRecord | None) -> None:
        self.current = image
        self.current_changed.emit(image)

    # ------------------------------------------------------------------ model
    def set_model(self, info: ModelInfo) -> bool:
        """The worker has a model ready; returns whether it is a new generation."""
        new = self.model_info is None or info.generation != self.model_info.generation
        self.model_info = info
        self.model_changed.emit(info, new)
        return new

    def knows_predictions(self, image: ImageRecord | None) -> bool:
        """Whether the current model has looked at ``image`` (its predictions and crop are current)."""
        info = self.model_info
        return image is not None and info is not None and image.model_generation == info.generation

    # ------------------------------------------------------------------ results
    def add_result(self, result: ResultRecord) -> ImageRecord | None:
        """A finished job's result joins its image; ``None`` when the image was closed meanwhile."""
        image = self.image(result.job.image_id)
        if image is not None:
            image.results.append(result)
            self.results_changed.emit(image, result)
        self.changed.emit()
        self.result_added.emit(result)
        return image

    def delete_results(self, image: ImageRecord, chosen: list[ResultRecord]) -> list[int]:
        """Remove ``chosen`` from ``image``; :meth:`undo_delete` brings them back. Returns their former
        positions (0-based); the others are renumbered (numbers are positions, as in the report)."""
        removed = [(i, r) for i, r in enumerate(image.results) if any(r is c for c in chosen)]
        if not removed:
            return []
        image.results[:] = [r for r in image.results if not any(r is c for c in chosen)]
        self._deleted.append(Deletion(image, removed))
        first = removed[0][0]
        self.results_changed.emit(image, image.results[min(first, len(image.results) - 1)] if image.results else None)
        self.changed.emit()
        return [i for i, _ in removed]

    @property
    def can_undo(self) -> bool:
        return bool(self._deleted)

    def undo_delete(self) -> Deletion | None:
        """Put the last deletion back, newest first; ``None`` when there is none or its image was closed."""
        if not self._deleted:
            return None
        deletion = self._deleted.pop()
        if self.index(deletion.image) < 0:
            return None
        for index, result in deletion.removed:
            deletion.image.results.insert(min(index, len(deletion.image.results)), result)
        self.results_changed.emit(deletion.image, deletion.removed[0][1])
        self.changed.emit()
        return deletion

    # ------------------------------------------------------------------ queue
    def queue(self, job: JobSpec) -> None:
        self.jobs[job.id] = job
        self.queue_changed.emit()

    def job_started(self, job_id: int) -> None:
        self.running_job = job_id
        self.last_progress = None
        self.queue_changed.emit()

    def job_ended(self, job_id: int) -> None:
        self.jobs.pop(job_id, None)
        if self.running_job == job_id:
            self.running_job = None
        self.queue_changed.emit()

    def next_to_cancel(self) -> int | None:
        """The running job, or with none running (the queue waits for a batch) the next queued one."""
        return self.running_job if self.running_job is not None else next(iter(self.jobs), None)

    def batch_started(self, batch_id: int) -> None:
        self._batches.add(batch_id)
        self.queue_changed.emit()

    def batch_ended(self, batch_id: int) -> None:
        self._batches.discard(batch_id)
        self.queue_changed.emit()

    @property
    def batch_running(self) -> bool:
        """A batch holds the worker (until the worker says it ended; its dialog may be closed by then)."""
        return bool(self._batches)

    # ------------------------------------------------------------------ dataset reviews
    def keep_review_notes(self, review: ReviewNotes) -> None:
        """A dataset review's notes, as they are now: the session keeps them."""
        self.reviews[review_key(review.results_dir, review.game)] = review
        self.changed.emit()

    # ------------------------------------------------------------------ sessions
    def snapshot(self, view: dict) -> Session:
        """Everything a ``.fgvis`` session keeps, with the window's ``view`` (what is shown, the settings)."""
        images = [
            SessionImage(
                image.name, str(image.path) if image.path else None, image.sha256, image.notes, list(image.results)
            )
            for image in self.images
        ]
        reviews = [ReviewNotes(r.results_dir, r.game, dict(r.notes)) for r in self.reviews.values() if r.notes]
        return Session(images, {"current": self.index(self.current), **view}, __version__, reviews)


def review_key(folder: str | Path, game: str) -> tuple[str, str]:
    """Which dataset review: the results folder (absolute, as typed otherwise) and the game."""
    try:
        folder = Path(folder).resolve()
    except (OSError, RuntimeError, ValueError):  # ValueError: a NUL character in a hostile path
        folder = Path(folder)
    return str(folder), game
