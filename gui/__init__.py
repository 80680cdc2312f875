"""FGVis Studio desktop application (PySide6). Depends on :mod:`engine`; the engine never imports it."""

from importlib import metadata

try:
    __version__ = metadata.version("fgvis-studio")
except metadata.PackageNotFoundError:  # a frozen bundle without package metadata
    __version__ = "0.1.0"
