"""How many CPU threads the engine's torch work uses, chosen once per process and deliberately.

torch's default is one thread per core, each spinning while it waits for work. On a machine shared with
another CPU-heavy process (a second explanation, a browser rendering, a compile) spinning threads of two
processes take each other's cores and a run slows down many-fold (measured: 478 s instead of 8 s on two
cores). The engine therefore

* asks OpenMP to let idle threads sleep (``OMP_WAIT_POLICY=PASSIVE``; :mod:`engine` sets it when it is
  imported before torch, unless the variable is already set), and
* uses the cores this process may run on (its CPU affinity), or the number the user chose:
  :func:`configure`'s argument, else the ``FGVIS_THREADS`` environment variable (``fgvis --threads N``
  sets it; the desktop app reads it too).
"""

from __future__ import annotations

import os

from .errors import ConfigError

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
    """Set torch's intra-op thread count to :func:`chosen_threads` and return it."""
    import torch

    count = chosen_threads(threads)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
