"""Hostile sessions in the window (issue 16, class 6): the engine's refusal reaches the user as a message
and the window stays usable; a photo that is gone gets a bounded grey stand-in and its results stay
reviewable (tampered sessions themselves: tests/engine/test_hostile_sessions.py)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from engine import FGVisConfig, explain
from engine.results.record import ExplanationRecord
from engine.results.session import MAX_PLACEHOLDER_PIXELS, Session, SessionImage, save_session


@pytest.fixture
def records(toy_model, photo):
    out = []
    for game in ("preserve", "delete"):
        result = explain(toy_model, photo, game=game, config=FGVisConfig(steps=3))
        out.append(
            ExplanationRecord.from_explanation(result, 0, toy_model, image_name=photo.name, image_path=str(photo))
        )
    return out


def _with_mask(path, mask: np.ndarray) -> None:
    """Rewrite result 1's arrays in the saved session ``path`` with another mask."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    with np.load(io.BytesIO(members["arrays/result_0.npz"])) as arrays:
        values = {**arrays, "mask": mask}
    buffer = io.BytesIO()
    np.savez(buffer, **values)
    members["arrays/result_0.npz"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_a_hostile_session_shows_the_refusal_and_the_window_stays_usable(window, records, photo, qtbot, tmp_path):
    hostile = tmp_path / "review.fgvis"
    save_session(hostile, Session([SessionImage(photo.name, str(photo), None, "", records)]))
    _with_mask(hostile, np.zeros((3, 5), np.float32))
    with qtbot.waitSignal(window.error_shown, timeout=30_000) as shown:
        window.sessions.open(hostile)
    title, message = shown.args
    assert title == "Could not open the session"
    assert message == ("review.fgvis: image 1 ('photo.png'), result 1: mask has shape (3, 5), expected (3, H, W)")
    assert window.error_box is not None and message in window.error_box.text()
    assert window.workspace.images == [] and window.sessions.path is None  # nothing half-opened
    # Still usable: a valid session opens with its results, and so does a photo.
    good = tmp_path / "good.fgvis"
    save_session(good, Session([SessionImage(photo.name, str(photo), None, "", records)]))
    with qtbot.waitSignal(window.sessions.opened, timeout=30_000) as opened:
        window.sessions.open(good)
    assert opened.args[0] == 1 and window.results.table.rowCount() == 2 and window.sessions.path == good
    with qtbot.waitSignal(window.image_opened, timeout=30_000):
        window.open_paths([photo])
    assert window.workspace.current.path == photo and window.workspace.current.pixels.shape == (90, 120, 3)


def test_a_missing_photo_with_huge_crop_boxes_gets_a_bounded_stand_in_and_reviewable_results(
    window, records, photo, qtbot, tmp_path
):
    """The crop boxes span 100 MP (the largest photo allowed; a grey copy at that size and its display copy
    took 700 MB): the stand-in is at most MAX_PLACEHOLDER_PIXELS and the boxes are scaled with it."""
    for record in records:
        record.crop_box = (100.0, 0.0, 40_000.0, 2_500.0)
    path = tmp_path / "review.fgvis"
    gone = tmp_path / "gone.png"
    save_session(path, Session([SessionImage("gone.png", str(gone), None, "", records)]))
    with qtbot.waitSignal(window.sessions.opened, timeout=30_000) as opened:
        window.sessions.open(path)
    count, problems = opened.args
    assert count == 1 and any("not found" in p for p in problems)
    assert any("grey stand-in at" in p and "scaled" in p for p in problems)
    image = window.workspace.current
    height, width = image.pixels.shape[:2]
    assert width * height <= MAX_PLACEHOLDER_PIXELS and abs(width / height - 16) < 0.01
    assert image.display.shape == (height, width) and image.display[0, 0] == 0xFF808080
    assert window.results.table.rowCount() == 2
    for result in image.results:
        left, _, right, bottom = result.crop_box
        assert abs(right - width) <= 1 and abs(bottom - height) <= 1 and abs(left - 100 * width / 40_000) < 1
        window.results.select(result)
        assert window.results.current_result() is result
        assert window.layers["Explanation e"].image() is not None  # the result is shown on the stand-in
