"""Batches and dataset reviews: the Batch dialog, and the "Dataset review" windows on batch results
folders whose cluster notes the workspace (and so the session) keeps."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt

from engine import ConfigError
from engine.results.session import ReviewNotes

from .. import __version__
from ..batch_dialog import BatchDialog
from ..method_panel import MethodPanel
from ..settings import last_folder
from ..worker import Worker
from ..workspace import Workspace, review_key
from . import Host


class DatasetReviews(QObject):
    """Opens batches and review windows, one window per (results folder, game); closes them all on quit."""

    def __init__(self, workspace: Workspace, worker: Worker, host: Host, method: MethodPanel) -> None:
        super().__init__(host)  # a child of the window: it goes when the window goes
        self.workspace, self.worker, self.host, self.method = workspace, worker, host, method
        #: Open review windows by :func:`gui.workspace.review_key` of the analysis they show.
        self.windows: dict[tuple[str, str], object] = {}
        worker.batch_finished.connect(self._on_batch_ended)
        worker.batch_failed.connect(self._on_batch_ended)

    # ------------------------------------------------------------------ batches
    def batch_dialog(self) -> BatchDialog | None:
        """The Batch dialog with the Method panel's settings (``None`` when they are invalid)."""
        try:
            config = self.method.config()
        except ConfigError as exc:
            self.host.show_error("Invalid method settings", str(exc))
            return None
        folder = last_folder(self.host.settings, "batches")
        dialog = BatchDialog(self.host, self.worker, config, self.method.defense.isChecked(), folder)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.batch_started.connect(self.workspace.batch_started)
        dialog.show()
        return dialog

    def _on_batch_ended(self, batch_id: int, _details) -> None:
        self.workspace.batch_ended(batch_id)

    # ------------------------------------------------------------------ review windows
    def open(self, folder: Path, game: str = "preserve"):
        """The "Dataset review" window (:mod:`gui.dataset_view`) on a batch results folder (the one already
        open on it is brought forward); notes the workspace holds for it join the analysis's own."""
        from ..dataset_view import DatasetReviewWindow  # pyqtgraph: loaded when first needed

        key = review_key(folder, game)
        window = self.windows.get(key)
        if window is not None:
            window.raise_()
            window.activateWindow()
            return window
        window = DatasetReviewWindow(self.host, app_version=__version__)
        window.failed.connect(self._on_failed)
        window.notes_changed.connect(self.workspace.keep_review_notes)
        window.analysis_loaded.connect(lambda analysis, window=window: self._key_window(window, analysis))
        window.destroyed.connect(lambda _=None, window=window: self._forget_window(window))
        self.windows[key] = window
        window.show()
        held = self.workspace.reviews.get(key)
        window.open_folder(Path(folder), game, notes=held.notes if held else None)
        return window

    def restore(self, review: ReviewNotes) -> str | None:
        """A dataset review of an opened session: its notes join those held; its window opens when the
        results folder holds a saved analysis. Returns a problem to report, or ``None``."""
        from engine.analysis import find_analysis, join_notes  # scikit-learn: loaded when first needed

        key = review_key(review.results_dir, review.game)
        held = self.workspace.reviews.get(key)
        if held is None:
            self.workspace.reviews[key] = review
        else:
            join_notes(held.notes, review.notes)
        if not review.notes:
            return None
        window = self.windows.get(key)
        if window is not None:
            window.merge_notes(review.notes)
            return None
        kept = f"its {len(review.notes)} cluster note(s) are kept in the session"
        if not Path(review.results_dir).is_dir():
            return f"The dataset review of {review.results_dir} cannot be shown (the folder is not there); {kept}"
        if find_analysis(Path(review.results_dir)) is None:
            # Opening a session never starts an analysis (nor writes into a folder without one).
            return (
                f"The dataset review of {review.results_dir} has no saved analysis there; {kept}: open the "
                "folder with File → Open batch results to analyse it and see them"
            )
        self.open(Path(review.results_dir), review.game)
        return None

    def close_all(self) -> None:
        """Close every review window: each writes its pending notes and stops a running analysis."""
        for window in set(self.windows.values()):
            window.close()

    def _on_failed(self, message: str) -> None:
        self.host.show_error("Dataset review", message)

    def _key_window(self, window, analysis) -> None:
        """A review window is known by the analysis it shows (its results folder and game), which may
        differ from the folder it was opened on (an analysis folder, a delete analysis, another folder
        opened in the window)."""
        self._forget_window(window)
        self.windows[review_key(analysis.results_dir, analysis.game)] = window

    def _forget_window(self, window) -> None:
        for key in [key for key, known in self.windows.items() if known is window]:
            del self.windows[key]
