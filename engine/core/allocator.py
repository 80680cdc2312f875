"""The C allocator's settings for the engine's CPU work (glibc on Linux; elsewhere nothing is changed).

torch allocates each pass's activations anew. glibc serves large blocks with ``mmap`` (above a threshold
that starts at 128 KiB and adapts) and gives freed memory at the top of its heap back to the system
(beyond a 128 KiB trim threshold), so every optimisation step faults its activation memory in again.
Measured on this project's 2-core CPU (2026-12-02, EfficientNet-Lite0, one 100-step explanation after a
warm-up call, three alternating runs each):

============================================  ==================  ==================
setting                                        minor faults/step   seconds per step
============================================  ==================  ==================
glibc's defaults                               2,500-4,100         0.130-0.154
trim threshold 512 MiB only                    57,000              0.29-0.31
mmap threshold 32 MiB only                     6,500-7,100         0.131-0.145
**mmap 32 MiB and trim 512 MiB**               **320-340**         **0.112-0.126**
============================================  ==================  ==================

At batch 16 (8 steps, two runs each): 1.94-2.23 s per step with the defaults, 1.69-1.76 s with both set
(3x fewer faults); peak memory 2.87-2.89 GB and 2.79-2.94 GB, memory held after the run 2.5 GB and
2.6-2.8 GB. Setting one threshold switches glibc's adaptation off, so :func:`tune` sets both or neither.

**Opt-in** (``FGVIS_MALLOC=tuned``): with the thresholds set in the test suite's long-lived process,
whose explanations run in several threads (GUI workers, Ray), a benchmark's bare pass took 4.6 s instead
of 0.16 s and the run aborted later; the cause was not found in time, so the default stays glibc's own
(``FGVIS_MALLOC`` unset or ``system``; any other value is refused). The user's own choice in the
environment also wins: ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_`` or a ``glibc.malloc.`` setting in ``GLIBC_TUNABLES``. With another allocator
preloaded (jemalloc, tcmalloc) the call changes nothing.

A long-lived process (the desktop app) calls :func:`release` when a run ends, so memory freed by the run
goes back to the system between runs instead of staying with the process.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

from engine.errors import ConfigError

#: Set to ``system`` to keep the C library's allocator settings.
ENV = "FGVIS_MALLOC"
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 512 * 1024 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_tuned = False


def tune() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (see the module's measurements); ``True``
    when they were set. Safe to call more than once; a no-op off 64-bit glibc or when the user chose
    otherwise. Raises :class:`~engine.errors.ConfigError` for an ``FGVIS_MALLOC`` it does not know."""
    global _tuned
    choice = os.environ.get(ENV, "").strip().lower()
    if choice not in ("", "tuned", "system"):
        raise ConfigError(f"{ENV}={choice!r}: use 'tuned' (fixed thresholds) or 'system' (glibc's own, the default)")
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    chosen = any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"))
    if choice != "tuned" or chosen or "glibc.malloc." in tunables:
        return False
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # The mmap threshold first: a trim threshold alone switches glibc's adaptive mmap threshold off and
    # leaves it at 128 KiB (measured 2.2x slower above).
    if not mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD):
        return False
    _tuned = bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _tuned


def release() -> None:
    """Give memory freed since the last run back to the system (glibc's ``malloc_trim``; a no-op
    elsewhere). Takes a few milliseconds; call it when a run has ended, not between steps."""
    libc = _glibc() if _tuned else None
    if libc is not None:
        libc.malloc_trim(0)


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is 64-bit glibc, else ``None`` (macOS, Windows, musl, 32-bit)."""
    if not sys.platform.startswith("linux") or sys.maxsize <= 2**32 or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018 -- both must exist
    except (OSError, AttributeError):
        return None
    return libc
