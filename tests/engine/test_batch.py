"""``fgvis batch`` / ``engine.batch.run_batch`` on the toy classifier: bad files, resuming, the index."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from engine import FGVisConfig, TargetError
from engine.batch import run_batch


@pytest.fixture
def folder(tmp_path, photo):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(photo, images / "a.png")
    (images / "b_broken.jpg").write_bytes(b"\xff\xd8 truncated")
    shutil.copy(photo, images / "c.png")
    (images / "notes.txt").write_text("not an image, not listed")
    return images


def test_a_bad_file_in_the_middle_is_listed_and_the_rest_is_done(toy_model, folder, tmp_path):
    out = tmp_path / "out"
    reports = []
    summary = run_batch(toy_model, folder, out, targets="top2", games=("preserve", "delete"),
                        config=FGVisConfig(steps=3), batch_size=3, on_progress=reports.append)  # fmt: skip
    assert [name for name, _ in summary.failures] == ["b_broken.jpg"]
    assert "cannot be read" in summary.failures[0][1] or "not an image" in summary.failures[0][1]
    assert len(summary.written) == 2 * 2 * 2 and not summary.skipped and not summary.cancelled
    assert [r.done for r in reports] == list(range(1, 9)) and {r.total for r in reports} == {8}
    rows = list(csv.DictReader((out / "index.csv").open()))
    assert len(rows) == 8 and {r["image"] for r in rows} == {"a.png", "c.png"}
    assert all(float(r["prob_rescored"]) >= 0 for r in rows)
    assert len(json.loads((out / "index.json").read_text())) == 8
    assert (out / "index.html").read_text().count("<tr>") == 9


def test_a_second_run_resumes_and_skips_finished_items(toy_model, folder, tmp_path):
    out = tmp_path / "out"
    run_batch(toy_model, folder, out, config=FGVisConfig(steps=3))
    summaries = sorted(out.glob("*_preserve.json"))
    assert len(summaries) == 2
    first_times = [p.stat().st_mtime_ns for p in summaries]
    summary = run_batch(toy_model, folder, out, config=FGVisConfig(steps=3))
    assert len(summary.skipped) == 2 and not summary.written
    assert [p.stat().st_mtime_ns for p in summaries] == first_times
    redo = run_batch(toy_model, folder, out, config=FGVisConfig(steps=3), overwrite=True)
    assert len(redo.written) == 2


def test_a_cancelled_batch_keeps_finished_items_and_resumes(toy_model, folder, tmp_path):
    out = tmp_path / "out"
    done = []
    summary = run_batch(toy_model, folder, out, config=FGVisConfig(steps=3), batch_size=1,
                        on_progress=done.append, should_stop=lambda: len(done) >= 1)  # fmt: skip
    assert summary.cancelled and len(summary.written) == 1
    again = run_batch(toy_model, folder, out, config=FGVisConfig(steps=3), batch_size=1)
    assert len(again.skipped) == 1 and len(again.written) == 1


def test_an_unknown_class_stops_before_any_work(toy_model, folder, tmp_path):
    with pytest.raises(TargetError):
        run_batch(toy_model, folder, tmp_path / "out", targets="banana,durian", config=FGVisConfig(steps=1))
    assert not (tmp_path / "out").exists()
