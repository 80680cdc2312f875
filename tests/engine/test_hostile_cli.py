"""Hostile input to ``fgvis`` and ``run_batch`` (issue 16): file names (class 3), inputs that must be
listed rather than skipped and options validated up front (4), messages instead of tracebacks (5), and
items that stay one unit when a process is killed (8). Cases of our own; the reported corpus stays outside.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import FGVisConfig
from engine.cli import main
from engine.results.batch import run_batch
from engine.results.export import complete_export, planned_paths
from engine.results.files import MAX_STEM_BYTES, file_stems, remove_stale_temporaries

STEPS = FGVisConfig(steps=2)


def _photo(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
    return path


def _index_rows(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "index.csv").open(encoding="utf-8")))


def _within(seconds: float, function, *args, **kwargs):
    """Run ``function`` in a thread; fail (instead of hanging the suite) if it takes longer than ``seconds``."""
    result, error = [], []
    thread = threading.Thread(target=lambda: _capture(result, error, function, *args, **kwargs), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{function.__name__} still running after {seconds} s: it blocked"
    if error:
        raise error[0]
    return result[0]


def _capture(result, error, function, *args, **kwargs):
    try:
        result.append(function(*args, **kwargs))
    except BaseException as exc:  # handed to the test thread
        error.append(exc)


# ---------------------------------------------------------------- 3. file names
def test_output_stems_are_unique_valid_and_stable():
    names = [
        "a.jpg",
        "a.png",
        "a_2.png",
        "A.PNG",
        "x" * 240 + ".png",
        "caf\udce9.png",
        "caf_.png",
        "b.png",
        "con:tro\x01l.png",
        "..png",
    ]
    stems = file_stems([Path("in") / name for name in names])
    assert len({stem.casefold() for stem in stems}) == len(names)
    assert stems[names.index("a_2.png")] == "a_2" and stems[names.index("b.png")] == "b"  # no clash: plain
    for stem in stems:
        assert len(stem.encode("utf-8")) <= MAX_STEM_BYTES and stem.isprintable()
        assert not set(stem) & set('/\\:*?"<>|') and stem.encode("utf-8")
    # A stem depends on its own file and its clashes only, not on the order or the other inputs.
    assert file_stems([Path("in/a.png"), Path("in/a.jpg")]) == [stems[1], stems[0]]


def test_a_batch_with_awkward_names_writes_every_item_once(toy_model, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    names = ["a.jpg", "a.png", "a_2.png", "y" * 240 + ".png", os.fsdecode(b"caf\xe9.png")]
    for seed, name in enumerate(names):
        _photo(folder / name, seed)
    out = tmp_path / "out"
    summary = run_batch(toy_model, folder, out, config=STEPS)
    assert len(summary.written) == 5 and not summary.failures
    rows = _index_rows(out)
    assert len(rows) == 5 and len({row["summary"] for row in rows}) == 5
    assert "caf\ufffd.png" in {row["image"] for row in rows}  # readable, valid UTF-8 everywhere
    for name in ("index.json", "index.html", *(row["summary"] for row in rows)):
        (out / name).read_bytes().decode("utf-8")
    assert len(list(out.glob("*.json"))) == 5 + 2  # + index.json, failures.json


def test_explain_writes_a_non_utf8_file_name(toy_model, tmp_path, samples, capsys):
    odd = tmp_path / os.fsdecode(b"\xff\xfephoto.jpg")
    shutil.copy(samples["coffee"], odd)
    out = tmp_path / "out"
    assert main(["explain", str(odd), "--steps", "1", "--out", str(out)]) == 0
    (summary,) = out.glob("*_preserve.json")
    assert json.loads(summary.read_text(encoding="utf-8"))["image"] == "\ufffd\ufffdphoto.jpg"


# ---------------------------------------------------------------- 4. nothing silently skipped
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_special_entries_in_a_batch_folder_are_listed_with_their_reason(toy_model, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    _photo(folder / "good.png")
    os.mkfifo(folder / "pipe.png")
    (folder / "dangling.jpg").symlink_to(folder / "gone.jpg")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    summary = _within(60, run_batch, toy_model, folder, out, config=STEPS)
    assert summary.written and len(summary.written) == 1
    reasons = dict(summary.failures)
    assert "named pipe" in reasons["pipe.png"] and "broken symbolic link" in reasons["dangling.jpg"]
    assert "cannot be read" in reasons["loop.png"]
    rows = _index_rows(out)
    assert {row["image"]: row["status"] for row in rows if row["status"] != "done"} == {
        "pipe.png": "failed",
        "dangling.jpg": "failed",
        "loop.png": "failed",
        "notes.txt": "ignored",
    }


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["predict", "IMG", "--device", "tpu"], "--device"),
        (["predict", "IMG", "--num-classes", "0"], "--num-classes"),
        (["predict", "IMG", "--num-classes", "-5"], "--num-classes"),
        (["predict", "IMG", "--top", "0"], "--top"),
        (["predict", "IMG", "--top", "-1"], "--top"),
        (["explain", "IMG", "--out", "OUT", "--batch-size", "0"], "--batch-size"),
        (["explain", "IMG", "--out", "OUT", "--batch-size", "-1"], "--batch-size"),
        (["explain", "IMG", "--out", "OUT", "--lr", "inf"], "--lr"),
        (["explain", "IMG", "--out", "OUT", "--lr", "0"], "--lr"),
        (["explain", "IMG", "--out", "OUT", "--blur-sigma", "0"], "--blur-sigma"),
        (["explain", "IMG", "--out", "OUT", "--blur-sigma", "nan"], "--blur-sigma"),
        (["explain", "IMG", "--out", "OUT", "--lambda", "inf"], "--lambda"),
        (["explain", "IMG", "--out", "OUT", "--lambda", "nan"], "--lambda"),
        (["explain", "IMG", "--out", "OUT", "--steps", "0"], "--steps"),
        (["explain", "IMG", "--out", "OUT", "--device", "meta"], "--device"),
        (["explain", "IMG", "--out", "OUT", "--device", "mps"], "--device"),
        (["explain", "IMG", "--out", "OUT", "--colormap", "rainbowz"], "--colormap"),
        (["explain", "IMG", "--out", "OUT", "--seed", str(10**30)], "--seed"),
        (["explain", "IMG", "--out", "OUT", "--seed", "-1"], "--seed"),
        (["batch", "DIR", "--out", "OUT", "--steps", "-3"], "--steps"),
    ],
)
def test_every_option_is_checked_before_anything_happens(argv, option, tmp_path, samples, capsys):
    out = tmp_path / "out"
    argv = [{"IMG": str(samples["coffee"]), "OUT": str(out), "DIR": str(tmp_path)}.get(a, a) for a in argv]
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "Traceback" not in err
    assert not out.exists()  # refused before the output folder was made


def test_empty_batch_targets_are_refused(toy_model, tmp_path, photo):
    from engine import ConfigError

    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(photo, folder / "a.png")
    for spec in (",", " , ", "top0", ""):
        with pytest.raises(ConfigError, match="targets"):
            run_batch(toy_model, folder, tmp_path / "out", targets=spec, config=STEPS)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- 5. a second Ctrl-C
def test_a_second_ctrl_c_exits_130_without_a_traceback_or_partial_files(tmp_path, photo):
    """The second signal is sent once the first one has been handled (its message printed), while the run
    winds down on the built-in model (binarisation and export take a second or more)."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "engine", "explain", str(photo), "--steps", "100000", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    for line in process.stderr:
        if "/100000" in line:
            break
    process.send_signal(signal.SIGINT)
    for line in process.stderr:
        if "Ctrl-C again" in line:
            break
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")] if out.exists() else True


# ---------------------------------------------------------------- 8. an item is one unit
def test_an_item_with_files_from_two_runs_is_redone(toy_model, tmp_path, photo):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(photo, folder / "a.png")
    out = tmp_path / "out"
    (stem,) = run_batch(toy_model, folder, out, config=STEPS).written
    assert complete_export(out, stem) is not None
    # A kill during --overwrite: the new mask landed, the old summary stayed.
    mask = planned_paths(out, stem)["mask"]
    data = bytearray(mask.read_bytes())
    data[-1] ^= 0xFF  # same size, other values
    mask.write_bytes(bytes(data))
    assert complete_export(out, stem) is None
    again = run_batch(toy_model, folder, out, config=STEPS)
    assert again.written == [stem] and not again.skipped
    assert complete_export(out, stem) is not None
    # A kill between the files and the summary: no summary, the item is redone.
    planned_paths(out, stem)["summary"].unlink()
    assert run_batch(toy_model, folder, out, config=STEPS).written == [stem]


def test_temporaries_of_a_killed_run_are_removed_on_the_next(toy_model, tmp_path, photo):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(photo, folder / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".a_0_preserve_mask.npy.k2j3_9xa.tmp"
    fresh = out / ".a_0_preserve_evidence.png.abcdefgh.tmp"
    mine = out / ".notes.txt"  # a hidden file of the user's: never touched
    for path in (stale, fresh, mine):
        path.write_bytes(b"partial")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(mine, (old, old))
    run_batch(toy_model, folder, out, config=STEPS)
    assert not stale.exists() and fresh.exists() and mine.exists()
    assert remove_stale_temporaries(out, older_than_s=-1) == [fresh]


def test_a_folder_another_batch_is_writing_is_refused_and_a_dead_runs_lock_taken_over(toy_model, tmp_path, photo):
    import socket

    from engine import ConfigError
    from engine.results.batch import LOCK_FILE, batch_lock

    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(photo, folder / "a.png")
    out = tmp_path / "out"
    with batch_lock(out), pytest.raises(ConfigError, match=r"another batch .* is writing to"):  # we are the other
        run_batch(toy_model, folder, out, config=STEPS)
    assert not (out / LOCK_FILE).exists()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK_FILE).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    assert len(run_batch(toy_model, folder, out, config=STEPS).written) == 1
    assert not (out / LOCK_FILE).exists()
