"""The process settings the command line, the app, Ray workers and the benchmarks' children apply once
at start: the thread count (engine.core.threads) and the C allocator's thresholds (engine.core.allocator)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from engine.core import threads
from engine.errors import ConfigError

GLIBC_64 = sys.platform.startswith("linux") and sys.maxsize > 2**32 and platform.libc_ver()[0] == "glibc"


def test_the_thread_count_comes_from_the_argument_then_the_environment(monkeypatch):
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.chosen_threads() == 3 and threads.chosen_threads(1) == 1
    monkeypatch.delenv(threads.ENV)
    assert threads.chosen_threads() == threads.available_cores()
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(threads.ENV, bad)
        with pytest.raises(ConfigError, match=threads.ENV):
            threads.chosen_threads()


def _tune_in_child(**env) -> dict:
    """engine.core.allocator.tune() and threads.configure(1) in a fresh process with ``env`` added."""
    code = """
import json, torch
from engine.core import allocator, threads
try:
    result = {"tuned": allocator.tune(), "threads": threads.configure(1), "torch": torch.get_num_threads()}
except Exception as exc:
    result = {"tuned": f"{type(exc).__name__}: {exc}"}
print(json.dumps(result))
"""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES", "FGVIS_MALLOC"))}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env={**base, **env}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC_64, reason="the thresholds are 64-bit glibc's")
def test_the_allocator_thresholds_are_set_unless_the_user_chose_otherwise():
    assert _tune_in_child() == {"tuned": False, "threads": 1, "torch": 1}  # opt-in
    assert _tune_in_child(FGVIS_MALLOC="tuned") == {"tuned": True, "threads": 1, "torch": 1}
    assert _tune_in_child(FGVIS_MALLOC="system")["tuned"] is False
    assert _tune_in_child(FGVIS_MALLOC="tuned", MALLOC_TRIM_THRESHOLD_="131072")["tuned"] is False
    glibc_choice = "glibc.malloc.trim_threshold=131072"
    assert _tune_in_child(FGVIS_MALLOC="tuned", GLIBC_TUNABLES=glibc_choice)["tuned"] is False
    assert _tune_in_child(FGVIS_MALLOC="off")["tuned"].startswith("ConfigError: FGVIS_MALLOC='off'")


def test_release_is_safe_anywhere():
    from engine.core import allocator

    allocator.release()  # malloc_trim on glibc, nothing elsewhere; must not raise
