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

``FGVIS_MALLOC=system`` keeps glibc's defaults, and so does any ``MALLOC_MMAP_THRESHOLD_`` or
``MALLOC_TRIM_THRESHOLD_`` already in the environment (the user's own choice).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: Set to ``system`` to keep the C library's allocator settings.
ENV = "FGVIS_MALLOC"
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 512 * 1024 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def tune() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (see the module's measurements); ``True``
    when they were set. Safe to call more than once; a no-op off glibc or when the user chose otherwise."""
    if os.environ.get(ENV, "").strip().lower() == "system" or not sys.platform.startswith("linux"):
        return False
    if any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
