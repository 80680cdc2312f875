"""What the main window keeps between runs in its settings: geometry and dock layout, the Method panel's
choices, the evidence layer's style and the recent files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, Qt
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMenu

from .layers import EVIDENCE, LayerStack, apply_layer_settings, layer_settings
from .method_panel import MethodPanel
from .settings import read_json, write_json

MAX_RECENT = 10


def restore_window_state(
    window: QMainWindow, settings: QSettings, docks: dict[str, QDockWidget], method: MethodPanel, layers: LayerStack
) -> None:
    """Geometry, docks, method choices and the evidence style as last saved (a first run: the defaults,
    with docks sized for the screen)."""
    geometry, state = settings.value("window/geometry"), settings.value("window/state")
    if isinstance(geometry, QByteArray):
        window.restoreGeometry(geometry)
    else:
        window.resize(1400, 900)
    if not (isinstance(state, QByteArray) and window.restoreState(state)):
        # The Jobs/Results tabs grow with the screen: ~4 result rows at 768 px, ~8 at 1080 px.
        window.resizeDocks([docks["jobs"]], [max(190, window.height() // 4)], Qt.Orientation.Vertical)
        window.resizeDocks([docks["images"], docks["layers"]], [150, 420], Qt.Orientation.Vertical)
        window.resizeDocks([docks["images"], docks["predictions"]], [270, 330], Qt.Orientation.Horizontal)
        window.resizeDocks([docks["predictions"], docks["method"]], [300, 330], Qt.Orientation.Vertical)
    method.apply_settings(read_json(settings, "method", {}))
    evidence = read_json(settings, "layers/evidence", {})
    apply_layer_settings(layers, {EVIDENCE: {k: v for k, v in evidence.items() if k != "visible"}})


def save_window_state(window: QMainWindow, settings: QSettings, method: MethodPanel, layers: LayerStack) -> None:
    settings.setValue("window/geometry", window.saveGeometry())
    settings.setValue("window/state", window.saveState())
    write_json(settings, "method", method.settings())
    evidence = layer_settings(layers)[EVIDENCE]
    write_json(settings, "layers/evidence", {k: v for k, v in evidence.items() if k != "visible"})


class RecentFiles:
    """File → Open recent: the last :data:`MAX_RECENT` images opened, newest first, kept in ``settings``."""

    def __init__(self, menu: QMenu, settings: QSettings, open_paths: Callable[[list[Path]], None]) -> None:
        self.menu, self.settings, self.open_paths = menu, settings, open_paths
        self._rebuild()

    def add(self, path: Path | None) -> None:
        if path is not None:
            recent = [p for p in read_json(self.settings, "recent_files", []) if p != str(path)]
            write_json(self.settings, "recent_files", [str(path), *recent][:MAX_RECENT])
            self._rebuild()

    def _rebuild(self) -> None:
        self.menu.clear()
        for entry in read_json(self.settings, "recent_files", []):
            self.menu.addAction(entry, lambda p=entry: self.open_paths([Path(p)]))
        self.menu.setEnabled(not self.menu.isEmpty())
