"""Export, reports and sessions on the toy classifier: round trips, all-or-nothing writes, clear errors."""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from engine import FGVisConfig, explain
from engine.colormaps import apply_colormap, display_range
from engine.core.explanation import GAMES, LOSSES, OPTIMIZERS, REFERENCES, SPARSITY
from engine.results.export import ExportError, compose_overlay, export_record, planned_paths, rescore_png
from engine.results.files import FILE_MODE
from engine.results.record import ExplanationRecord
from engine.results.report import curve_plot, image_report
from engine.results.session import Session, SessionError, SessionImage, load_session, save_session, source_problem


@pytest.fixture
def record(toy_model, photo):
    result = explain(toy_model, photo, config=FGVisConfig(steps=6))
    return ExplanationRecord.from_explanation(result, 0, toy_model, image_name=photo.name, image_path=str(photo))


def test_export_round_trip(record, toy_model, tmp_path):
    tmp_path = tmp_path / "out"
    paths = export_record(record, tmp_path, "item", model=toy_model, colormap="viridis")
    assert set(paths) == set(planned_paths(tmp_path, "item")) and all(p.is_file() for p in paths.values())
    assert np.array_equal(np.load(paths["mask"]), record.mask)
    assert np.allclose(np.load(paths["mask_mean"]), record.mask.mean(0))
    mask8 = np.asarray(Image.open(paths["mask_png8"]))
    mask16 = np.asarray(Image.open(paths["mask_png16"]))
    assert mask8.dtype == np.uint8 and np.abs(mask8 / 255 - record.mask.mean(0)).max() <= 0.5 / 255 + 1e-6
    assert mask16.dtype == np.uint16 and np.abs(mask16 / 65535 - record.mask.mean(0)).max() <= 0.5 / 65535 + 1e-6
    assert np.array_equal(np.asarray(Image.open(paths["explanation"])), record.explanation_rgb)
    assert np.array_equal(
        np.asarray(Image.open(paths["overlay"])), compose_overlay(record.input_rgb, record.evidence, "viridis")
    )
    summary = json.loads(paths["summary"].read_text())
    assert summary["target_label"] == record.target_label and summary["colormap"] == "viridis"
    assert summary["files"]["mask"] == "item_mask.npy" and summary["image_path"] == record.image_path
    # The heat map is coloured on the robust scale written to the JSON; the mask files above are unscaled.
    shown = display_range(record.evidence)
    assert (summary["scale"], summary["value_range"], summary["scale_text"]) == (
        "robust",
        [0.0, shown.high],
        shown.text(),
    )
    assert summary["scale_text"].startswith("0 - ") and summary["scale_text"].endswith("(robust: 99.5th percentile)")
    assert np.array_equal(
        np.asarray(Image.open(paths["evidence"])), apply_colormap(record.evidence, "viridis", 0.0, shown.high)
    )
    # The round trip: the 8-bit PNG, read back, scores what e scored up to quantisation.
    assert summary["prob_rescored"] == record.prob_rescored
    assert abs(record.prob_rescored - record.prob_explanation) < 0.01
    assert rescore_png(toy_model, paths["explanation"], record.target) == pytest.approx(record.prob_rescored)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert {p.stat().st_mode & 0o777 for p in paths.values()} == {FILE_MODE}  # not mkstemp's 0600


def test_the_fixed_scale_is_one_argument_away(record, tmp_path):
    paths = export_record(record, tmp_path / "out", "item", scale="fixed")
    summary = json.loads(paths["summary"].read_text())
    assert (summary["scale"], summary["value_range"], summary["scale_text"]) == ("fixed", [0.0, 1.0], "0 - 1 (fixed)")
    assert np.array_equal(np.asarray(Image.open(paths["evidence"])), apply_colormap(record.evidence))


def test_existing_files_are_not_overwritten_without_consent(record, tmp_path):
    tmp_path = tmp_path / "out"
    paths = export_record(record, tmp_path, "item")
    before = {p: p.read_bytes() for p in paths.values()}
    record.notes = "changed"
    with pytest.raises(ExportError, match="already exist"):
        export_record(record, tmp_path, "item")
    assert {p: p.read_bytes() for p in paths.values()} == before
    export_record(record, tmp_path, "item", overwrite=True)
    assert json.loads(paths["summary"].read_text())["notes"] == "changed"


def test_a_failing_write_leaves_no_file_at_all(record, tmp_path, monkeypatch):
    real_fsync, calls = os.fsync, []

    def failing_fsync(fd):
        calls.append(fd)
        if len(calls) == 4:  # the disk fills up at the fourth file
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    out = tmp_path / "out"
    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(ExportError, match="No space left"):
        export_record(record, out, "item")
    assert list(out.iterdir()) == []


def test_an_unwritable_folder_is_a_clear_error(record, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ExportError, match="cannot write"):
        export_record(record, blocker / "out", "item")


def test_html_report_embeds_every_picture_and_fact(record):
    record.notes = "looks at the <square>"
    html = image_report(
        "photo.png", [record, record], photo=record.input_rgb, image_notes="image note", app_version="9.9"
    )
    assert html.count("data:image/png;base64,") == 1 + 2 * 5  # photo + per result: x, e, overlay, bar, curve
    for text in (
        "photo.png",
        record.target_label,
        "weights SHA-256",
        "top-5 on e",
        "9.9",
        "image note",
        "looks at the &lt;square&gt;",
        "adversarial-evidence monitor",
        "score inflation",
    ):
        assert text in html
    shown = display_range(record.evidence)
    assert html.count(f"colour scale {shown.text()}") == 2 and html.count("evidence colour scale") == 2
    fixed = image_report("photo.png", [record], scale="fixed")
    assert "colour scale 0 - 1 (fixed)" in fixed and "robust" not in fixed
    plot = curve_plot(record.history)
    assert plot.shape == (160, 360, 3) and (plot != 255).any()


def test_engine_warnings_reach_the_record_its_json_and_the_report(toy_model, photo):
    result = explain(toy_model, photo, config=FGVisConfig(steps=3))
    warned = dataclasses.replace(result, warnings=["ran out of memory on a batch of 2 <GPU>: split it"])
    record = ExplanationRecord.from_explanation(warned, 0, toy_model, image_name=photo.name)
    assert record.warnings == warned.warnings
    assert json.loads(json.dumps(record.metadata()))["warnings"] == warned.warnings
    report = image_report(photo.name, [record])
    assert "split it" in report and "<GPU>" not in report


def test_session_round_trip(record, photo, tmp_path):
    record.notes = "result note"
    record.warnings = ["ran without the CUDA graph"]
    path = tmp_path / "review.fgvis"
    save_session(path, Session([SessionImage(photo.name, str(photo), "abc", "image note", [record])], {"k": 1}, "1"))
    session = load_session(path)
    (image,) = session.images
    (again,) = image.results
    assert (image.name, image.path, image.notes, session.view) == (photo.name, str(photo), "image note", {"k": 1})
    for name in ("mask", "evidence", "explanation_rgb", "deletion_rgb", "input_rgb"):
        assert np.array_equal(getattr(again, name), getattr(record, name))
    assert again.metadata() == record.metadata() and again.config == record.config
    assert again.prob_reference == record.prob_reference is not None
    assert np.array_equal(again.history["target_prob"], record.history["target_prob"])


#: Every value of every named choice (a ``Literal`` type) a record stores: its game and its config's.
CHOICES = {"game": GAMES, "optimizer": OPTIMIZERS, "reference": REFERENCES, "loss": LOSSES, "sparsity": SPARSITY}
NAMED_CHOICES = [(setting, value) for setting, values in CHOICES.items() for value in values]


@pytest.mark.parametrize(("setting", "value"), NAMED_CHOICES, ids=[f"{s}={v}" for s, v in NAMED_CHOICES])
def test_every_named_choice_round_trips_through_a_record_and_a_session(record, photo, tmp_path, setting, value):
    """The stored config is read back through FGVisConfig's annotations (engine.results.record.config_types),
    which are Literal types for the named choices: each of their values must come back as it went in."""
    if setting == "game":
        changed = dataclasses.replace(record, game=value)
    else:
        changed = dataclasses.replace(record, config=dataclasses.replace(record.config, **{setting: value}))
    again = ExplanationRecord.from_parts(json.loads(json.dumps(changed.metadata())), changed.arrays())
    assert (again.game, again.config) == (changed.game, changed.config)
    assert getattr(again if setting == "game" else again.config, setting) == value
    path = tmp_path / "review.fgvis"
    save_session(path, Session([SessionImage(photo.name, str(photo), None, "", [changed])], {}, "1"))
    (reopened,) = load_session(path).images[0].results
    assert (reopened.game, reopened.config) == (changed.game, changed.config)


def test_moved_changed_corrupt_and_foreign_sessions(record, photo, tmp_path):
    from engine.models.loading import sha256_of

    image = SessionImage(photo.name, str(photo), sha256_of(photo), "", [record])
    assert source_problem(image) is None
    photo.write_bytes(photo.read_bytes() + b"\0")
    assert "changed" in source_problem(image)
    image.path = str(tmp_path / "gone.png")
    assert "not found" in source_problem(image)
    broken = tmp_path / "broken.fgvis"
    broken.write_bytes(b"PK\3\4 nothing")
    with pytest.raises(SessionError, match="not an FGVis Studio session"):
        load_session(broken)
    foreign = tmp_path / "foreign.fgvis"
    with zipfile.ZipFile(foreign, "w") as archive:
        archive.writestr("session.json", json.dumps({"format": "something else"}))
    with pytest.raises(SessionError, match="not an FGVis Studio session"):
        load_session(foreign)
    damaged = tmp_path / "damaged.fgvis"
    save_session(damaged, Session([image]))
    with zipfile.ZipFile(damaged) as archive:
        document = archive.read("session.json")
    with zipfile.ZipFile(damaged, "w") as archive:  # the arrays are lost
        archive.writestr("session.json", document)
    with pytest.raises(SessionError, match="damaged"):
        load_session(damaged)
    with pytest.raises(SessionError, match=r"missing\.fgvis: no such file"):
        load_session(tmp_path / "missing.fgvis")


def test_a_read_only_folder_is_reported_and_nothing_is_written(record, tmp_path, monkeypatch):
    """The tests run as root, which chmod cannot stop: the file system's refusal is simulated."""
    import errno
    import tempfile

    out = tmp_path / "out"
    out.mkdir()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(ExportError, match="Read-only file system"):
        export_record(record, out, "item")
    assert list(out.iterdir()) == []


def test_the_8bit_check_flags_an_explanation_that_a_saved_picture_would_undo(record):
    record.prob_rescored = record.prob_explanation + max(0.02, 0.1 * record.prob_original) / 2
    assert record.survives_8bit and "8-bit" not in record.status
    record.prob_rescored = record.prob_explanation + max(0.02, 0.1 * record.prob_original) * 2
    assert not record.survives_8bit and record.status.endswith("fails the 8-bit check")
    assert record.metadata()["survives_8bit"] is False
    assert "FAILED: the saved picture" in image_report("x.png", [record])


def test_a_result_saved_before_binarisation_reopens_with_the_settings_it_ran_with(record):
    meta = record.metadata()
    meta["config"] = {key: value for key, value in meta["config"].items() if key not in ("sparsity", "binarize")}
    meta["config"]["lr"] = None
    reopened = ExplanationRecord.from_parts(meta, record.arrays())
    assert reopened.config.sparsity == "proximal" and reopened.config.binarize is False
    assert reopened.config.lr == (0.01 if record.game == "preserve" else 0.02)
    assert ExplanationRecord.from_parts(record.metadata(), record.arrays()).config == record.config


def test_a_result_saved_before_quantize_reopens_as_scored_in_float(record):
    meta = record.metadata()
    assert meta["config"]["quantize"] is True  # saved with the setting it ran with
    meta["config"].pop("quantize")
    assert ExplanationRecord.from_parts(meta, record.arrays()).config.quantize is False
