"""Writing result files safely, and encoding them: several files land together or not at all, so a
crash or a full disk never leaves half a result behind."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Permissions of new result files: what ``open()`` would give them (``mkstemp`` alone gives 0600).
FILE_MODE = 0o666 & ~_umask()


def write_atomic(files: dict[Path, bytes]) -> None:
    """Write several files so that either all of them end up complete or none of them changes.

    Everything goes to temporary files beside the targets first (this is where a full or read-only disk
    fails); only then are they renamed into place. Raises ``OSError``; no temporary file is left."""
    temporaries: dict[Path, str] = {}
    try:
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temporaries[path] = temporary
            with os.fdopen(handle, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(temporary, FILE_MODE)
        for path, temporary in temporaries.items():
            os.replace(temporary, path)
    except BaseException:
        for temporary in temporaries.values():
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        raise


def png_bytes(pixels: np.ndarray) -> bytes:
    """Lossless PNG of ``uint8`` ``(H, W, 3)`` RGB, ``(H, W)`` grey or ``uint16`` ``(H, W)`` grey pixels."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
