"""The workspace, the declared actions and the layer model without a main window: what the window shows
can be driven and saved on its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import engine
from engine.results.session import load_session, save_session
from gui.actions import ACTIONS, MENUS, RESULTS_MENU, TOOLBAR, UiState
from gui.records import ImageRecord, JobSpec, ResultRecord, next_id
from gui.workspace import Workspace, review_key

from ..conftest import FRUITS


@pytest.fixture
def results(toy_model):
    """Two real results of the toy model on one 40x40 image (preserve and delete), 3 steps each."""
    pixels = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    image = ImageRecord(next_id(), Path("/photos/a.png"), "a.png", pixels, sha256="ab" * 32)
    records = []
    for game in ("preserve", "delete"):
        config = engine.FGVisConfig(steps=3)
        job = JobSpec(
            next_id(),
            image.id,
            image.name,
            pixels,
            2,
            FRUITS[2],
            game,
            True,
            config,
            image_path=image.path,
            image_sha256=image.sha256,
        )
        explanation = engine.explain(toy_model, pixels, 2, game=game, config=config)
        records.append(
            ResultRecord.from_explanation(
                explanation,
                0,
                toy_model,
                image_name=image.name,
                id=next_id(),
                job=job,
                image_path=str(image.path),
                image_sha256=image.sha256,
            )
        )
    return image, records


def test_an_image_opened_twice_is_one_record(qtbot):
    workspace = Workspace()
    pixels = np.zeros((4, 4, 3), np.uint8)
    first = ImageRecord(next_id(), Path("/p/a.png"), "a.png", pixels, sha256="1")
    with qtbot.waitSignal(workspace.image_added):
        assert workspace.add_image(first) is first
    again = ImageRecord(next_id(), Path("/p/a.png"), "a.png", pixels, sha256="1")
    changed = ImageRecord(next_id(), Path("/p/a.png"), "a.png", pixels, sha256="2")  # edited on disk
    assert workspace.add_image(again) is first and workspace.add_image(changed) is changed
    assert workspace.images == [first, changed] and workspace.index(changed) == 1 and workspace.index(again) == -1


def test_results_delete_undo_and_the_session_round_trip_without_a_window(results, qtbot, tmp_path):
    image, (preserve, delete) = results
    workspace = Workspace()
    workspace.add_image(image)
    workspace.set_current(image)
    with qtbot.waitSignal(workspace.changed):
        for result in (preserve, delete):
            workspace.add_result(result)
    assert image.results == [preserve, delete]
    with qtbot.waitSignal(workspace.results_changed) as shown:
        assert workspace.delete_results(image, [preserve]) == [0]
    assert image.results == [delete] and shown.args == [image, delete] and workspace.can_undo
    deletion = workspace.undo_delete()
    assert deletion.removed == [(0, preserve)] and image.results == [preserve, delete] and not workspace.can_undo

    session = workspace.snapshot({"selected_result": 1})
    assert session.view == {"current": 0, "selected_result": 1}
    path = tmp_path / "s.fgvis"
    save_session(path, session)
    (saved,) = load_session(path).images
    assert [r.game for r in saved.results] == ["preserve", "delete"]
    np.testing.assert_array_equal(saved.results[1].mask, delete.mask)


def test_the_queue_and_batches(qtbot):
    workspace = Workspace()
    job = JobSpec(next_id(), 1, "a", np.zeros((2, 2, 3), np.uint8), 0, "apple", "preserve", True, engine.FGVisConfig())
    second = JobSpec(next_id(), 1, "a", job.pixels, 0, "apple", "delete", True, job.config)
    for queued in (job, second):
        workspace.queue(queued)
    assert workspace.next_to_cancel() == job.id  # nothing runs yet (a batch holds the worker): the next queued
    workspace.job_started(second.id)
    assert workspace.next_to_cancel() == second.id
    workspace.job_ended(second.id)
    assert workspace.running_job is None and list(workspace.jobs) == [job.id]
    workspace.batch_started(7)
    assert workspace.batch_running
    workspace.batch_ended(7)
    assert not workspace.batch_running


def test_review_notes_are_kept_by_folder_and_game(tmp_path):
    from engine.results.session import ReviewNotes

    workspace = Workspace()
    workspace.keep_review_notes(ReviewNotes(str(tmp_path / "run" / ".." / "run"), "preserve", {"0:1": "shortcut"}))
    assert review_key(tmp_path / "run", "preserve") in workspace.reviews
    (kept,) = workspace.snapshot({}).reviews
    assert kept.notes == {"0:1": "shortcut"}


def test_every_action_is_declared_once_and_placed_where_it_exists():
    names = [spec.name for spec in ACTIONS]
    assert len(names) == len(set(names))
    placed = [e for entries in MENUS.values() for e in entries if e != "-" and not e.startswith("@")]
    assert set(placed) | set(TOOLBAR) | set(RESULTS_MENU) <= set(names)
    assert set(names) <= set(placed)  # every command can be found in a menu
    idle, running = UiState(), UiState(has_image=True, has_result=True, job_running=True)
    rules = {spec.name: spec.when for spec in ACTIONS}
    assert not idle.allows(rules["run"]) and running.allows(rules["run"])
    assert running.allows(rules["cancel"]) and not running.allows(rules["load_model"])
    assert not running.allows(rules["undo_delete"]) and UiState(can_undo=True).allows(rules["undo_delete"])


def test_the_layer_model_needs_no_qt():
    code = (
        "import sys; import numpy as np; from gui.layers import default_layers, layer_settings;"
        "stack = default_layers(); seen = []; stack.layer_changed.connect(lambda l, p: seen.append(p));"
        "stack['Evidence'].set_data(np.zeros((2, 2), np.float32)); stack['Evidence'].opacity = 0.5;"
        "assert seen == ['data', 'opacity'], seen; assert layer_settings(stack)['Evidence']['opacity'] == 0.5;"
        "assert not any(name.startswith('PySide6') for name in sys.modules), 'Qt was imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
