"""How many CPU threads the engine's torch work uses, chosen once per process and deliberately.

torch's default is one thread per core, each spinning for a long while (GNU OpenMP: 300,000 rounds) when
it waits for work. On a machine shared with another CPU-heavy process, spinning threads take cores the
other process needs, and the other way round. Measured on this project's 2-core CPU (2026-12-01,
EfficientNet-Lite0, one 30-step explanation at batch 1, alone / beside a process keeping both cores busy
with torch): default spinning 5.26 / 22.58 s (4.3x); ``OMP_WAIT_POLICY=PASSIVE`` 7.08 / 8.70 s (alone
35 % slower: every parallel region wakes sleeping threads); ``GOMP_SPINCOUNT=10000`` 5.19 / 28.60 s;
**``GOMP_SPINCOUNT=1000`` 5.68 / 10.08 s** (1.9x the default's time alone); one thread 6.88 / 9.58 s. The
engine therefore

* lets idle OpenMP threads spin 1,000 rounds before they sleep (``GOMP_SPINCOUNT=1000``; :mod:`engine`
  sets it when it is imported before torch, unless the variable is already set), and
* uses the cores this process may run on (its CPU affinity), or the number the user chose:
  :func:`configure`'s argument, else the ``FGVIS_THREADS`` environment variable (``fgvis --threads N``
  sets it; the desktop app reads it too).
"""

from __future__ import annotations

import os

from engine.errors import ConfigError

#: Environment variable with the number of threads to use (a positive integer).
ENV = "FGVIS_THREADS"


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def chosen_threads(threads: int | None = None) -> int:
    """``threads`` if given, else ``$FGVIS_THREADS``, else :func:`available_cores`.

    Raises :class:`~engine.errors.ConfigError` for a value that is not a positive whole number."""
    if threads is None:
        text = os.environ.get(ENV, "").strip()
        if not text:
            return available_cores()
        if not text.isdecimal() or int(text) < 1:
            raise ConfigError(f"{ENV}={text!r}: give a positive whole number of threads")
        threads = int(text)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a positive whole number, not {threads!r}")
    return threads


def configure(threads: int | None = None) -> int:
    """Prepare this process for the engine's CPU work: torch's intra-op thread count to
    :func:`chosen_threads` (returned), and the C allocator's thresholds (:func:`engine.core.allocator.tune`).
    The command line, the desktop app and the benchmarks' child processes call it once at start."""
    import torch

    from .allocator import tune

    tune()
    count = chosen_threads(threads)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
