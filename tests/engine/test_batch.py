"""``fgvis batch`` / ``engine.results.batch.run_batch`` on the toy classifier: bad files, resuming, the index."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from engine import ConfigError, FGVisConfig, TargetError
from engine.results.batch import INDEX_COLUMNS, image_files, images_in, run_batch, write_index


@pytest.fixture
def folder(tmp_path, photo):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(photo, images / "a.png")
    (images / "b_broken.jpg").write_bytes(b"\xff\xd8 truncated")
    shutil.copy(photo, images / "c.png")
    (images / "notes.txt").write_text("not an image: listed as ignored")
    return images


def test_a_bad_file_in_the_middle_is_listed_and_the_rest_is_done(toy_model, folder, tmp_path):
    out = tmp_path / "out"
    reports = []
    summary = run_batch(
        toy_model,
        folder,
        out,
        targets="top2",
        games=("preserve", "delete"),
        config=FGVisConfig(steps=3),
        batch_size=3,
        on_progress=reports.append,
    )
    assert [name for name, _ in summary.failures] == ["b_broken.jpg"]
    assert "cannot be read" in summary.failures[0][1] or "not an image" in summary.failures[0][1]
    assert len(summary.written) == 2 * 2 * 2 and not summary.skipped and not summary.cancelled
    assert [r.done for r in reports] == list(range(1, 9)) and {r.total for r in reports} == {8}
    rows = list(csv.DictReader((out / "index.csv").open()))
    done = [r for r in rows if r["status"] == "done"]
    assert len(done) == 8 and {r["image"] for r in done} == {"a.png", "c.png"}
    assert all(float(r["prob_rescored"]) >= 0 for r in done)
    assert [r["image"] for r in rows if r["status"] == "failed"] == ["b_broken.jpg"]
    assert len([r for r in json.loads((out / "index.json").read_text()) if r["status"] == "done"]) == 8
    assert [(r["image"], r["status"]) for r in rows if r["status"] == "ignored"] == [("notes.txt", "ignored")]
    assert summary.ignored == ["notes.txt"]
    assert (out / "index.html").read_text().count("<tr>") == 1 + 8 + 1 + 1


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
    summary = run_batch(
        toy_model,
        folder,
        out,
        config=FGVisConfig(steps=3),
        batch_size=1,
        on_progress=done.append,
        should_stop=lambda: len(done) >= 1,
    )
    assert summary.cancelled and len(summary.written) == 1
    again = run_batch(toy_model, folder, out, config=FGVisConfig(steps=3), batch_size=1)
    assert len(again.skipped) == 1 and len(again.written) == 1


def test_an_unknown_class_stops_before_any_work(toy_model, folder, tmp_path):
    with pytest.raises(TargetError):
        run_batch(toy_model, folder, tmp_path / "out", targets="banana,durian", config=FGVisConfig(steps=1))
    assert not (tmp_path / "out").exists()


# --- Failures are in the index, and a batch never explains its own pictures (issue 15, item 7) ---

OLD_COLUMNS = INDEX_COLUMNS[: INDEX_COLUMNS.index("summary") + 1]


def _index(out):
    """The index's rows and records, without the "ignored" row of notes.txt (tested above)."""
    rows = [r for r in csv.DictReader((out / "index.csv").open()) if r["status"] != "ignored"]
    records = [r for r in json.loads((out / "index.json").read_text()) if r["status"] != "ignored"]
    return rows, records, (out / "index.html").read_text()


def test_a_file_that_failed_is_listed_in_every_index_with_the_reason_until_it_is_fixed(
    toy_model, folder, tmp_path, photo
):
    out = tmp_path / "out"
    summary = run_batch(toy_model, folder, out, config=FGVisConfig(steps=2))
    reason = summary.failures[0][1]
    rows, records, html = _index(out)
    assert list(rows[0]) == list(INDEX_COLUMNS) and list(INDEX_COLUMNS[: len(OLD_COLUMNS)]) == list(OLD_COLUMNS)
    assert [(r["image"], r["status"]) for r in rows] == [
        ("a.png", "done"),
        ("c.png", "done"),
        ("b_broken.jpg", "failed"),
    ]
    failed = rows[-1]
    assert failed["reason"] == reason and reason
    assert all(failed[column] == "" for column in OLD_COLUMNS if column != "image")  # no numbers for a failure
    assert all(r["reason"] == "" and float(r["prob_explanation"]) >= 0 for r in rows[:2])
    assert records[-1]["status"] == "failed" and records[-1]["reason"] == reason
    assert records[-1]["prob_explanation"] is None and records[0]["summary"].endswith("_preserve.json")
    assert "b_broken.jpg" in html and "failed" in html and "2 result(s), 1 failed" in html
    assert html.count("<tr>") == 1 + 2 + 1 + 1  # + notes.txt, ignored

    # The index is rewritten from what is on disk: the failure is kept there too.
    (out / "index.csv").unlink()
    write_index(out)
    assert [r["status"] for r in _index(out)[0]] == ["done", "done", "failed"]

    # A failure record is never a finished item: a rerun finds the same failure, nothing else to do.
    again = run_batch(toy_model, folder, out, config=FGVisConfig(steps=2))
    assert len(again.skipped) == 2 and not again.written and [n for n, _ in again.failures] == ["b_broken.jpg"]
    assert [r["status"] for r in _index(out)[0]] == ["done", "done", "failed"]

    # Fixed: it is explained and no longer listed as failed.
    shutil.copy(photo, folder / "b_broken.jpg")
    fixed = run_batch(toy_model, folder, out, config=FGVisConfig(steps=2))
    assert fixed.written == [f"b_broken_{fixed_target(out)}_preserve"] and not fixed.failures
    rows, records, html = _index(out)
    assert [r["status"] for r in rows] == ["done"] * 3 and "failed" not in html
    assert [r["status"] for r in json.loads((out / "failures.json").read_text())] == ["ignored"]


def fixed_target(out):
    (path,) = out.glob("b_broken_*_preserve.json")
    return json.loads(path.read_text())["target"]


def test_failures_of_other_images_stay_listed_and_folders_without_a_failure_record_still_index(
    toy_model, folder, tmp_path
):
    out = tmp_path / "out"
    run_batch(toy_model, folder, out, config=FGVisConfig(steps=2))
    run_batch(toy_model, [folder / "a.png"], out, config=FGVisConfig(steps=2))  # b_broken.jpg not retried
    assert [r["image"] for r in _index(out)[0] if r["status"] == "failed"] == ["b_broken.jpg"]
    item = {
        "image": "c.png",
        "item": "c_3_delete",
        "target": 3,
        "target_label": "date",
        "game": "delete",
        "reason": "CUDA ran out of memory",
    }
    write_index(out, failures=[item])
    rows = _index(out)[0]
    assert [(r["image"], r["target"], r["target_label"], r["game"], r["status"], r["reason"]) for r in rows[2:]] == [
        ("c.png", "3", "date", "delete", "failed", "CUDA ran out of memory")
    ]
    (out / "failures.json").unlink()  # a folder written before failures were recorded
    write_index(out)
    assert [r["status"] for r in _index(out)[0]] == ["done", "done"]


def test_results_written_into_the_images_folder_are_never_explained(toy_model, folder):
    first = run_batch(toy_model, folder, folder, targets="top2", config=FGVisConfig(steps=2))
    assert len(first.written) == 4 and (folder / "index.json").is_file()
    again = run_batch(toy_model, folder, folder, targets="top2", config=FGVisConfig(steps=2))
    assert not again.written and sorted(again.skipped) == sorted(first.written)
    assert [name for name, _ in again.failures] == ["b_broken.jpg"]
    assert [p.name for p in image_files(folder, folder)] == ["a.png", "b_broken.jpg", "c.png"]
    redo = run_batch(toy_model, folder, folder, targets="top2", config=FGVisConfig(steps=2), overwrite=True)
    assert sorted(redo.written) == sorted(first.written)
    rows = _index(folder)[0]
    assert {r["image"] for r in rows} == {"a.png", "b_broken.jpg", "c.png"} and len(rows) == 5
    # A results folder given as the images folder of another batch holds no photos.
    for name in ("a.png", "c.png", "b_broken.jpg"):
        (folder / name).unlink()
    with pytest.raises(ConfigError, match="no images"):
        images_in(folder)


def test_a_results_folder_inside_the_images_folder_is_never_read(toy_model, folder):
    out = folder / "results"
    first = run_batch(toy_model, folder, out, config=FGVisConfig(steps=2))
    again = run_batch(toy_model, folder, out, config=FGVisConfig(steps=2))
    assert len(first.written) == 2 and not again.written and len(again.skipped) == 2
    assert [p.name for p in image_files(folder, out)] == ["a.png", "b_broken.jpg", "c.png"]


def test_photos_named_like_outputs_are_kept_outside_results_folders(folder, photo):
    shutil.copy(photo, folder / "holiday_overlay.png")
    assert "holiday_overlay.png" in [p.name for p in image_files(folder)]
    assert "holiday_overlay.png" not in [p.name for p in image_files(folder, folder)]  # it will be the results folder
