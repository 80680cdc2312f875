"""The process settings the command line, the app and the benchmarks' children apply once at start:
the thread count (engine.core.threads) and the C allocator's thresholds (engine.core.allocator)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.core import allocator, threads
from engine.errors import ConfigError


def test_the_thread_count_comes_from_the_argument_then_the_environment(monkeypatch):
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.chosen_threads() == 3 and threads.chosen_threads(1) == 1
    monkeypatch.delenv(threads.ENV)
    assert threads.chosen_threads() == threads.available_cores()
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(threads.ENV, bad)
        with pytest.raises(ConfigError, match=threads.ENV):
            threads.chosen_threads()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the thresholds are glibc's")
def test_the_allocator_thresholds_are_set_unless_the_user_chose_otherwise(monkeypatch):
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", allocator.ENV):
        monkeypatch.delenv(name, raising=False)
    assert allocator.tune()  # glibc accepts both values (the mmap threshold's largest allowed on 64 bits)
    monkeypatch.setenv(allocator.ENV, "system")
    assert not allocator.tune()
    monkeypatch.delenv(allocator.ENV)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert not allocator.tune()


def test_configure_applies_both_in_a_fresh_process():
    code = "import torch; from engine.core import threads; print(threads.configure(1), torch.get_num_threads())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "1"]
