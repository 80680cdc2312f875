"""FGVis Studio desktop application (PySide6). Depends on :mod:`engine`; the engine never imports it."""
