"""Measures how long the GUI thread's event loop goes without running: a precise 5 ms timer notes the
longest gap between its ticks beyond its interval. That gap is what a user feels as a frozen window."""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, QTimer

TICK_MS = 5


class StallMonitor(QObject):
    """``max_stall_ms`` since the last ``reset()``; runs while started."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(TICK_MS)
        self._timer.timeout.connect(self._tick)
        self._last: float | None = None
        self.max_stall_ms = 0.0
        self.ticks = 0

    def start(self) -> None:
        self._last = None
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()
        self._last = None

    def reset(self) -> None:
        self.max_stall_ms = 0.0
        self.ticks = 0
        self._last = None

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.max_stall_ms = max(self.max_stall_ms, (now - self._last) * 1000.0 - TICK_MS)
        self._last = now
        self.ticks += 1
