"""HTML report -> PDF with Qt alone (QTextDocument + QPdfWriter; no browser)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMarginsF
from PySide6.QtGui import QPageLayout, QPageSize, QPdfWriter, QTextDocument

from engine.results.export import ExportError, write_all_or_nothing

RESOLUTION_DPI = 150


def page_layout() -> QPageLayout:
    """A4 portrait with 12 mm margins."""
    return QPageLayout(
        QPageSize(QPageSize.PageSizeId.A4),
        QPageLayout.Orientation.Portrait,
        QMarginsF(12, 12, 12, 12),
        QPageLayout.Unit.Millimeter,
    )


def paged_document(html: str, layout: QPageLayout | None = None) -> QTextDocument:
    """``html`` laid out on the PDF's pages (``document.pageSize().height()`` is one page)."""
    document = QTextDocument()
    document.setDocumentMargin(0)
    document.setHtml(html)
    document.setPageSize((layout or page_layout()).paintRectPixels(RESOLUTION_DPI).size().toSizeF())
    return document


def page_of(document: QTextDocument, text: str) -> list[int]:
    """The 0-based page of every occurrence of ``text`` in a :func:`paged_document`."""
    pages, cursor = [], document.find(text)
    height = document.pageSize().height()
    while not cursor.isNull():
        rect = document.documentLayout().blockBoundingRect(cursor.block())
        line = cursor.block().layout().lineForTextPosition(cursor.positionInBlock())
        y = rect.top() + (line.y() if line.isValid() else 0.0)
        pages.append(int(y // height))
        cursor = document.find(text, cursor)
    return pages


def write_pdf(html: str, path: Path) -> int:
    """Render ``html`` to an A4 PDF at ``path`` and return its number of pages.

    The PDF is made in memory and written like every other result file (all or nothing); raises
    :class:`~engine.results.export.ExportError` when the folder cannot be written, leaving no partial file."""
    path = Path(path)
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    writer = QPdfWriter(buffer)
    writer.setResolution(RESOLUTION_DPI)
    writer.setPageLayout(page_layout())
    writer.setTitle(path.stem)
    document = paged_document(html, writer.pageLayout())
    pages = document.pageCount()
    document.print_(writer)
    del writer  # finishes the PDF in the buffer
    buffer.close()
    if data.isEmpty():
        raise ExportError(f"Qt could not render the PDF {path.name}")
    write_all_or_nothing({path: bytes(data.data())})
    return pages
