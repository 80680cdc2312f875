"""Exports: the selected result's files (masks, heat map, the overlay as shown, the explanation PNG that
the worker re-scores, JSON) and the current image's review report (PDF or self-contained HTML)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QImage
from PySide6.QtWidgets import QFileDialog

from engine.results.export import ExportError, existing_files, write_all_or_nothing
from engine.results.report import image_report

from .. import __version__
from ..layers import Layer
from ..pdf import write_pdf
from ..records import ResultRecord
from ..settings import last_folder, remember_folder
from ..worker import Worker
from ..workspace import Workspace
from . import Host

PDF_FILTER, HTML_FILTER = "PDF report (*.pdf)", "HTML report (*.html)"
REPORT_FILTER = f"{PDF_FILTER};;{HTML_FILTER}"


class ExportController(QObject):
    """Writes exports through the worker and reports in-process; ``last_export`` holds the paths of the
    last finished export (by kind).

    ``current_result()`` is the result selected in the window; ``overlay()`` renders the viewer as shown
    (a ``QImage``); ``evidence`` is the evidence layer whose colormap and scale the files use.

    Signal ``exported(ResultRecord)``: an export finished (the result's ``prob_rescored`` is filled in).
    """

    exported = Signal(object)

    def __init__(
        self,
        workspace: Workspace,
        worker: Worker,
        host: Host,
        current_result: Callable[[], ResultRecord | None],
        overlay: Callable[[], QImage],
        evidence: Layer,
    ) -> None:
        super().__init__(host)  # a child of the window: it goes when the window goes
        self.workspace, self.worker, self.host = workspace, worker, host
        self.current_result, self.overlay, self.evidence = current_result, overlay, evidence
        self.last_export: dict[str, Path] | None = None
        worker.export_done.connect(self._on_done)
        worker.export_failed.connect(self._on_failed)

    # ------------------------------------------------------------------ result files
    def export_result_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self.host, "Export the result to", last_folder(self.host.settings, "results")
        )
        if folder:
            remember_folder(self.host.settings, "results", Path(folder))
            self.export_result(Path(folder))

    def export_result(self, folder: Path) -> None:
        """Write the selected result to ``folder`` (in the worker, which re-scores the exported PNG).
        Existing files are replaced only after asking."""
        result, image = self.current_result(), self.workspace.current
        if result is None or image is None:
            return
        stem = f"{safe_stem(image.name)}_{result.target}_{result.game}_{result.id}"
        clashes = existing_files(folder, stem)
        question = f"{len(clashes)} file(s) of this export already exist in {folder}. Replace them?"
        if clashes and not self.host.confirm("Replace files?", question):
            return
        self.worker.submit_export(
            result,
            folder,
            stem,
            overlay=to_rgb_array(self.overlay()),
            colormap=self.evidence.colormap,
            scale=self.evidence.scale,
            overwrite=True,
        )
        self.host.show_status(f"Exporting {stem}…", 3000)

    def _on_done(self, result: ResultRecord, paths: dict) -> None:
        self.last_export = paths
        rescored = ""
        if result.prob_rescored is not None:
            difference = result.prob_rescored - result.prob_explanation
            rescored = (
                f"; the exported explanation PNG re-scores {result.prob_rescored:.4f} "
                f"(p(e) {result.prob_explanation:.4f}, difference {difference:+.4f})"
            )
        self.host.show_status(f"Exported {len(paths)} files to {paths['summary'].parent}{rescored}", 15000)
        self.exported.emit(result)
        self.workspace.changed.emit()

    def _on_failed(self, message: str) -> None:
        self.host.show_error("Export failed", message)

    def open_export_folder(self) -> bool:
        """Show the folder of the last export in the system's file manager."""
        if not self.last_export:
            return False
        return open_folder(next(iter(self.last_export.values())).parent)

    # ------------------------------------------------------------------ reports
    def export_report_dialog(self) -> None:
        image = self.workspace.current
        if image is None:
            return
        default = str(Path(last_folder(self.host.settings, "results")) / f"{safe_stem(image.name)}_report.pdf")
        path, chosen = QFileDialog.getSaveFileName(self.host, "Export the review report", default, REPORT_FILTER)
        if not path:
            return
        wanted = report_path(path, chosen)
        remember_folder(self.host.settings, "results", wanted.parent)
        # The dialog asked about replacing the name it returned, not one we added a suffix to.
        self.export_report(wanted, overwrite=wanted == Path(path))

    def export_report(self, path: Path, *, overwrite: bool = False) -> Path | None:
        """The current image's report with all its results: ``.pdf`` (Qt) or ``.html`` (self-contained)."""
        image = self.workspace.current
        if image is None:
            return None
        path = Path(path)
        if path.exists() and not overwrite and not self.host.confirm("Replace file?", f"{path} exists. Replace it?"):
            return None
        html = image_report(
            image.name,
            image.results,
            photo=image.pixels,
            image_notes=image.notes,
            app_version=__version__,
            colormap=self.evidence.colormap,
            scale=self.evidence.scale,
        )
        try:
            if path.suffix.lower() == ".pdf":
                note = f"{write_pdf(html, path)} page(s)"
            else:
                write_all_or_nothing({path: html.encode("utf-8")})
                note = f"{len(html) // 1024} KB"
        except ExportError as exc:
            self.host.show_error("Report not written", str(exc))
            return None
        self.host.show_status(f"Report written: {path} ({note})", 10000)
        return path


def report_path(path: str | Path, chosen_filter: str = "") -> Path:
    """The report file the user meant: the name typed in the save dialog, with the suffix of the chosen
    filter added when it has neither ``.pdf`` nor ``.html`` (``my_review`` + "PDF report" -> ``my_review.pdf``)."""
    path = Path(path)
    if path.suffix.lower() in (".pdf", ".html", ".htm"):
        return path
    suffix = ".html" if chosen_filter == HTML_FILTER else ".pdf"
    return path.with_name(path.name + suffix)


def open_folder(folder: Path) -> bool:
    """Show ``folder`` in the system's file manager; False when there is none (e.g. offscreen)."""
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


def safe_stem(name: str) -> str:
    """A file name's stem reduced to ``[A-Za-z0-9._-]`` (``"my photo.jpg"`` -> ``"my_photo"``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem) or "image"


def to_rgb_array(image: QImage) -> np.ndarray:
    """A QImage -> ``(h, w, 3)`` uint8 RGB copy."""
    converted = image.convertToFormat(QImage.Format.Format_RGB888)
    width, height, stride = converted.width(), converted.height(), converted.bytesPerLine()
    buffer = np.frombuffer(converted.constBits(), np.uint8, count=stride * height).reshape(height, stride)
    return buffer[:, : width * 3].reshape(height, width, 3).copy()
