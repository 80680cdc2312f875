"""Small controllers of the main window, one concern each: the job queue, sessions with autosave and
recovery, exports and reports, dataset reviews. Each changes the :class:`gui.workspace.Workspace`, talks
to the worker and reports through the window (its :class:`Host` side); the window only composes them."""

from __future__ import annotations

from typing import Protocol

from PySide6.QtCore import QSettings


class Host(Protocol):
    """What a controller needs from the window. The host is also a ``QWidget``: the controllers' parent
    and the parent of their dialogs."""

    settings: QSettings

    def setWindowTitle(self, title: str) -> None: ...

    def show_error(self, title: str, message: str) -> None: ...

    def show_status(self, message: str, timeout_ms: int = 0) -> None: ...

    def confirm(self, title: str, question: str) -> bool: ...
