"""Where the app keeps its settings (QSettings, INI, versioned) and its log file.

``FGVIS_STUDIO_HOME`` moves both (tests point it at a temporary folder); otherwise the platform's
per-user application data folder is used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

SETTINGS_VERSION = 1
APP_NAME = "FGVis Studio"


def app_home() -> Path:
    override = os.environ.get("FGVIS_STUDIO_HOME")
    if override:
        return Path(override)
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericDataLocation)
    return Path(base or Path.home()) / "fgvis-studio"


def log_path() -> Path:
    return app_home() / "logs" / "fgvis-studio.log"


def open_settings(path: Path | None = None) -> QSettings:
    """The INI settings file; one written by another settings version is started afresh."""
    path = path or app_home() / "settings.ini"
    settings = QSettings(str(path), QSettings.Format.IniFormat)
    stored = settings.value("version")
    if stored is not None and str(stored) != str(SETTINGS_VERSION):
        settings.clear()
    settings.setValue("version", SETTINGS_VERSION)
    return settings


def read_json(settings: QSettings, key: str, default):
    """A JSON value stored as a string (INI keeps lists and dicts unreliably across platforms)."""
    raw = settings.value(key)
    if raw is None:
        return default
    try:
        value = json.loads(str(raw))
    except ValueError:
        return default
    return value if isinstance(value, type(default)) else default


def write_json(settings: QSettings, key: str, value) -> None:
    settings.setValue(key, json.dumps(value))


def last_folder(settings: QSettings, kind: str = "images") -> str:
    """The folder a file dialog of ``kind`` opens in: where the user last chose one of that kind. Results
    (exports, reports, sessions, batches) never default to a photo's folder, which may be read-only
    (the bundled samples), but to the home folder; so does a remembered folder that is gone."""
    folder = str(settings.value(_folder_key(kind), "") or "")
    return folder if folder and Path(folder).is_dir() else str(Path.home())


def remember_folder(settings: QSettings, kind: str, folder: Path) -> None:
    settings.setValue(_folder_key(kind), str(folder))


def _folder_key(kind: str) -> str:
    return "last_folder" if kind == "images" else f"folders/{kind}"
