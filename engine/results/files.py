"""Writing result files safely, naming them, and encoding them: several files land together or not at
all, so a crash or a full disk never leaves half a result behind; output names are unique, valid on
every file system and readable; temporaries a killed process left behind are cleared."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from engine.errors import ConfigError


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


#: Longest output stem in UTF-8 bytes: with the item's class, game and the longest suffix
#: (``_12345_preserve_explanation.png``) a name stays well under the usual 255-byte limit.
MAX_STEM_BYTES = 120
#: Temporaries of :func:`write_atomic` older than this (seconds) belong to a process that died.
STALE_TEMPORARY_S = 60.0
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|\ud800-\udfff]')


def readable_name(name: str) -> str:
    """``name`` as text that can be written anywhere (JSON, CSV, HTML): bytes that were not valid UTF-8
    (kept by Python as lone surrogates) become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def file_stems(paths: Sequence[Path]) -> list[str]:
    """One output stem per input path: unique, valid on every common file system, readable and stable.

    A stem is the file's stem with control characters, path separators, characters Windows refuses and
    undecodable bytes replaced by ``_``, cut to :data:`MAX_STEM_BYTES`. Stems that would clash (``a.jpg``
    and ``a.png``; names equal apart from case; names cut to the same prefix) all get ``_`` and 8 hex
    digits of a hash of their full file name, so a name depends only on its own file and its clashes, never
    on the order of the inputs; a file whose stem clashes with nothing keeps its plain stem."""
    names = [Path(path).name for path in paths]
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    # The hash is of the file name; files of the same name from different folders hash their full path.
    keys = [name if counts[name] == 1 else os.path.abspath(path) for name, path in zip(names, paths, strict=True)]
    bases = [_safe_stem(name) for name in names]
    stems = list(bases)
    for length in (8, 12, 16, 24, 40):
        groups: dict[str, list[int]] = {}
        for index, stem in enumerate(stems):
            groups.setdefault(stem.casefold(), []).append(index)
        clashes = [indices for indices in groups.values() if len(indices) > 1]
        if not clashes:
            return stems
        for indices in clashes:
            for index in indices:
                digest = hashlib.sha1(os.fsencode(keys[index])).hexdigest()[:length]
                stems[index] = f"{_cut(bases[index], MAX_STEM_BYTES - length - 1)}_{digest}"
    raise ConfigError("the same input file was given twice")  # equal paths hash alike at every length


def _safe_stem(name: str) -> str:
    stem = Path(name).stem if Path(name).suffix else name
    stem = _UNSAFE.sub("_", stem).strip(" .") or "image"
    return _cut(stem, MAX_STEM_BYTES)


def _cut(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


def remove_stale_temporaries(folder: Path, older_than_s: float = STALE_TEMPORARY_S) -> list[Path]:
    """Delete the temporaries of :func:`write_atomic` in ``folder`` that a killed process left behind
    (hidden ``.NAME.XXXXXXXX.tmp`` files older than ``older_than_s``: a live write renames its own within
    a second). Returns what was removed."""
    removed = []
    now = time.time()
    with contextlib.suppress(OSError):
        for path in Path(folder).iterdir():
            if not _TEMPORARY.match(path.name):
                continue
            with contextlib.suppress(OSError):
                if path.is_file() and not path.is_symlink() and now - path.stat().st_mtime > older_than_s:
                    path.unlink()
                    removed.append(path)
    return removed


def png_bytes(pixels: np.ndarray) -> bytes:
    """Lossless PNG of ``uint8`` ``(H, W, 3)`` RGB, ``(H, W)`` grey or ``uint16`` ``(H, W)`` grey pixels."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
