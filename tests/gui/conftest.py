"""GUI fixtures: a temporary settings/log home, a tiny classifier, a generated photo and a main window."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine import ClassifierModel, Preprocessing

from ..engine.toy_models import TinyCNN

FRUITS = ["apple", "banana", "cherry", "date", "elderberry", "fig", "grape", "honeydew", "kiwi", "lemon"]
TOY_PREPROCESSING = Preprocessing(crop=(32, 32), resize=36, mean=(0.0,) * 3, std=(255.0,) * 3)


@pytest.fixture(autouse=True)
def app_home(tmp_path, monkeypatch):
    """Settings and logs of every GUI test live in a temporary folder."""
    home = tmp_path / "home"
    monkeypatch.setenv("FGVIS_STUDIO_HOME", str(home))
    return home


@pytest.fixture
def toy_model() -> ClassifierModel:
    torch.manual_seed(0)
    return ClassifierModel(TinyCNN(classes=len(FRUITS)).eval(), TOY_PREPROCESSING, list(FRUITS), "TinyCNN (fruits)")


@pytest.fixture
def photo(tmp_path):
    """A 120x90 RGB photo: a gradient with a bright square off-centre."""
    y, x = np.mgrid[0:90, 0:120]
    pixels = np.stack([x * 2, y * 2, np.full_like(x, 60)], axis=2).astype(np.uint8)
    pixels[30:60, 50:80] = (250, 240, 20)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


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
        qtbot.waitUntil(lambda: window.model_info is not None, timeout=30_000)
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
    qtbot.waitUntil(lambda: window.current.predictions is not None, timeout=30_000)
    return window
