"""GUI fixtures: a temporary settings/log home and main windows on the toy classifier (tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def app_home(tmp_path, monkeypatch):
    """Settings and logs of every GUI test live in a temporary folder."""
    home = tmp_path / "home"
    monkeypatch.setenv("FGVIS_STUDIO_HOME", str(home))
    return home


@pytest.fixture
def settings_file(tmp_path):
    return tmp_path / "settings.ini"


@pytest.fixture
def make_window(qtbot, toy_model, settings_file, tmp_path):
    """Build a main window on the toy model (ready when returned); closed at the end of the test."""
    from gui.main_window import MainWindow
    from gui.settings import open_settings

    windows = []

    def make(model=toy_model):
        window = MainWindow(open_settings(settings_file), model=model, log_file=tmp_path / "app.log")
        qtbot.addWidget(window)
        window.show()
        qtbot.waitUntil(lambda: window.workspace.model_info is not None, timeout=30_000)
        windows.append(window)
        return window

    yield make
    for window in windows:
        if not window.worker_thread.thread.isFinished():
            window.close()
        window.deleteLater()  # deterministic deletion, not whenever the garbage collector breaks a cycle


@pytest.fixture
def window(make_window):
    return make_window()


@pytest.fixture
def opened(window, photo, qtbot):
    """The window with ``photo`` open and predicted."""
    with qtbot.waitSignal(window.image_opened, timeout=30_000):
        window.open_paths([photo])
    qtbot.waitUntil(lambda: window.workspace.current.predictions is not None, timeout=30_000)
    return window
