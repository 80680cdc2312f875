"""HTML report -> PDF with Qt alone (QTextDocument + QPdfWriter; no browser)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from PySide6.QtCore import QMarginsF
from PySide6.QtGui import QPageLayout, QPageSize, QPdfWriter, QTextDocument

from engine.export import ExportError
from engine.output import FILE_MODE

RESOLUTION_DPI = 150


def write_pdf(html: str, path: Path) -> int:
    """Render ``html`` to an A4 PDF at ``path`` (atomically: temporary file, then rename).

    Returns the number of pages. Raises :class:`~engine.export.ExportError` when the folder cannot be
    written; no partial file is left."""
    path = Path(path)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
    except OSError as exc:
        raise ExportError(f"cannot write to {path.parent}: {exc.strerror or exc}") from exc
    try:
        writer = QPdfWriter(temporary)
        writer.setResolution(RESOLUTION_DPI)
        writer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Portrait,
                                         QMarginsF(12, 12, 12, 12), QPageLayout.Unit.Millimeter))  # fmt: skip
        writer.setTitle(path.stem)
        document = QTextDocument()
        document.setDocumentMargin(0)
        document.setHtml(html)
        document.setPageSize(writer.pageLayout().paintRectPixels(RESOLUTION_DPI).size().toSizeF())
        pages = document.pageCount()
        document.print_(writer)
        del writer  # finishes the file
        if os.path.getsize(temporary) == 0:
            raise ExportError(f"Qt could not write the PDF {path.name} (disk full?)")
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    return pages
