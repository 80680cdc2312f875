"""Checks every reader of a user's file makes before opening it: the path is a regular file (a FIFO, a
device or a socket would block or stream for ever), and sizes declared by a file stay within limits
before anything is allocated for them.

The limits are module constants so that a caller with a real need can raise them in one place (the
README's "Bad input" section lists them)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from engine.errors import FGVisError


def regular_file(path: str | os.PathLike, what: str, error: type[FGVisError]) -> Path:
    """``path`` as a :class:`~pathlib.Path` if it names a regular file (symbolic links followed).

    Parameters
    ----------
    path
        The file the user named.
    what
        What was expected, in words, e.g. ``"an image file"``; used in the message.
    error
        The error class to raise (``ImageLoadError``, ``ModelLoadError``, ``SessionError``...).

    Raises
    ------
    error
        Missing, a dangling or looping symbolic link, a folder, a FIFO, a socket or a device, or a file
        whose status cannot be read; the message names the path and what it is.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        kind = "a broken symbolic link" if path.is_symlink() else "no such file"
        raise error(f"{path}: {kind} (expected {what})") from None
    except OSError as exc:  # a symbolic-link loop, a permission problem on a folder above...
        raise error(f"{path} cannot be read ({exc.strerror or exc}): expected {what}") from None
    if stat.S_ISREG(mode):
        return path
    raise error(f"{path} is not a regular file but {_kind(mode)}: expected {what}")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def check_count(count: int, limit: int, what: str, where: str, error: type[FGVisError]) -> int:
    """``count`` if ``0 <= count <= limit``; else ``error`` naming ``where`` (a file), ``what`` and the limit."""
    if not 0 <= count <= limit:
        raise error(f"{where}: {what} is {count}, more than the limit of {limit}")
    return count
