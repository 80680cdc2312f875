"""Sessions: save and open ``.fgvis`` files of the workspace, autosave a recovery copy a moment after each
change, and offer it back after a crash."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox

from engine import FGVisError
from engine.results.session import ReviewNotes, Session, save_session

from ..records import ImageRecord
from ..settings import app_home, last_folder, remember_folder
from ..worker import Worker
from ..workspace import Workspace
from . import Host
from .reviews import DatasetReviews

log = logging.getLogger(__name__)

SESSION_FILTER = "FGVis sessions (*.fgvis)"
AUTOSAVE_DELAY_MS = 2000


class SessionController(QObject):
    """Saves and opens the workspace as a session; autosaves it to :meth:`recovery_path`.

    ``view_state()`` gives what the window shows (selected result, method and layer settings) for a
    snapshot; ``apply_view(view, images)`` shows an opened session's images as it was saved.

    Signal ``opened(int images, list problems)``: a session was opened.
    """

    opened = Signal(int, object)

    def __init__(
        self,
        workspace: Workspace,
        worker: Worker,
        host: Host,
        reviews: DatasetReviews,
        view_state: Callable[[], dict],
        apply_view: Callable[[dict, list[ImageRecord]], None],
    ) -> None:
        super().__init__(host)  # a child of the window: it goes when the window goes
        self.workspace, self.worker, self.host, self.reviews = workspace, worker, host, reviews
        self.view_state, self.apply_view = view_state, apply_view
        #: Where Save writes without asking: the session last saved or opened (not the recovery file).
        self.path: Path | None = None
        self._opening: Path | None = None
        self._closed = False
        self._owns_recovery = False  # only a recovery file this window wrote (or took over) is removed on exit
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setSingleShot(True)
        self.autosave_timer.setInterval(AUTOSAVE_DELAY_MS)
        self.autosave_timer.timeout.connect(self.autosave)
        self._autosaver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fgvis-autosave")
        workspace.changed.connect(self.schedule_autosave)
        worker.session_loaded.connect(self._on_loaded)
        worker.session_failed.connect(self._on_failed)

    # ------------------------------------------------------------------ save
    def snapshot(self) -> Session:
        return self.workspace.snapshot(self.view_state())

    def save(self, path: Path) -> bool:
        try:
            save_session(path, self.snapshot())
        except FGVisError as exc:
            self.host.show_error("Session not saved", str(exc))
            return False
        self.path = Path(path)
        remember_folder(self.host.settings, "sessions", Path(path).parent)
        self.host.show_status(f"Session saved: {path}", 8000)
        return True

    def save_quick(self) -> None:
        """File → Save: to the session's file, or ask for one."""
        if self.path is not None:
            self.save(self.path)
        else:
            self.save_dialog()

    def save_dialog(self) -> None:
        folder = last_folder(self.host.settings, "sessions")
        path, _ = QFileDialog.getSaveFileName(self.host, "Save session", folder, SESSION_FILTER)
        if path:
            self.save(Path(path) if path.endswith(".fgvis") else Path(path + ".fgvis"))

    # ------------------------------------------------------------------ open
    def open_dialog(self) -> None:
        folder = last_folder(self.host.settings, "sessions")
        path, _ = QFileDialog.getOpenFileName(self.host, "Open session", folder, SESSION_FILTER)
        if path:
            self.open(Path(path))

    def open(self, path: Path) -> None:
        """Open a saved session (in the worker); its images join the open ones with their results and notes."""
        self.worker.submit_open_session(path)
        self._opening = Path(path)

    def _on_loaded(self, images: list, view: dict, problems: list, reviews: list) -> None:
        problems = list(problems)
        for image in images:  # a session's records are its own, even of a file that is open
            self.workspace.append_image(image)
        self.apply_view(view, images)
        if self._opening is not None and self._opening != self.recovery_path():
            self.path = self._opening
        for review in reviews:  # after the images: a review that cannot be shown never costs them
            problem = self._restore_review(review)
            if problem:
                problems.append(problem)
        self.opened.emit(len(images), problems)
        if problems:
            self.host.show_error(
                "Part of the session could not be checked", "The results are shown, but:\n" + "\n".join(problems)
            )

    def _restore_review(self, review: ReviewNotes) -> str | None:
        try:
            return self.reviews.restore(review)
        except (FGVisError, OSError, ValueError, RuntimeError) as exc:
            return f"The dataset review of {review.results_dir} could not be reopened: {exc}"

    def _on_failed(self, message: str) -> None:
        self.host.show_error("Could not open the session", message)

    # ------------------------------------------------------------------ autosave and recovery
    @staticmethod
    def recovery_path() -> Path:
        return app_home() / "recovery.fgvis"

    def schedule_autosave(self) -> None:
        """Save a recovery copy a moment after the last change (results, notes, exports)."""
        if not self._closed:
            self.autosave_timer.start()

    def autosave(self) -> Future:
        """Write the recovery file in a background thread; returns the future (tests wait on it)."""
        snapshot, path = self.snapshot(), self.recovery_path()
        self._owns_recovery = True

        def write() -> None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                save_session(path, snapshot)
            except (FGVisError, OSError) as exc:
                log.warning("autosave to %s failed: %s", path, exc)

        return self._autosaver.submit(write)

    def offer_recovery(self) -> bool:
        """After a crash the recovery file is still there: offer to reopen it. Returns whether one exists."""
        path = self.recovery_path()
        if not path.is_file():
            return False
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Recover the last session?",
            "FGVis Studio did not close normally last time. Reopen the results it had autosaved?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            self.host,
        )
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.buttonClicked.connect(lambda button: self._on_recovery_answer(box, button))
        box.open()
        self.recovery_box = box
        return True

    def _on_recovery_answer(self, box: QMessageBox, button) -> None:
        if box.standardButton(button) == QMessageBox.StandardButton.Yes:
            self._owns_recovery = True
            self.open(self.recovery_path())
        else:
            with contextlib.suppress(OSError):
                self.recovery_path().unlink()

    def close(self) -> None:
        """The window closes: finish a pending autosave; a clean exit leaves no recovery file of ours."""
        self._closed = True
        self.autosave_timer.stop()
        self._autosaver.shutdown(wait=True)
        if self._owns_recovery:
            with contextlib.suppress(OSError):
                self.recovery_path().unlink()
