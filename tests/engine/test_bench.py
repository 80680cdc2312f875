"""The speed benchmarks' plumbing (their figures are printed, never asserted)."""

from __future__ import annotations

import pytest
import torch

from engine.evaluation.bench import device_name, run_speed_benchmark


def test_device_names_in_benchmark_tables(monkeypatch):
    assert device_name(torch.device("cpu")).startswith("CPU (")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"Test GPU {device}")
    assert device_name(torch.device("cuda:0")) == "Test GPU cuda:0"


@pytest.fixture(scope="module")
def speed_table():
    """One run of the speed benchmark at batch 1 (it runs two whole explain() calls and a child process)."""
    return run_speed_benchmark(batch_sizes=(1,), repeats=1, device="cpu", call_repeats=1)


def test_speed_benchmark_prints_a_row_per_batch_size(speed_table):
    row = next(line for line in speed_table.splitlines() if line.startswith("| 1 |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    bare, off, on, on_ratio, _, counted, counted_ratio = (float(c) for c in cells[1:8])
    assert min(bare, off, on, counted) > 0
    assert abs(on_ratio - on / bare) < 0.01 and abs(counted_ratio - counted / bare) < 0.01
    assert cells[9:11] == ["-", "-"]  # no eager column on the CPU
    assert cells[12] == "eager"  # no CUDA graph on the CPU


def test_profile_benchmark_times_the_variants_and_lists_the_top_operators():
    from engine.evaluation.bench import run_profile_benchmark

    report = run_profile_benchmark("efficientnet_lite0", batch_sizes=(1,), repeats=1, device="cpu", top=3)
    (row,) = [line for line in report.splitlines() if line.startswith("| 1 |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    bare, eager, ratio = float(cells[2]), float(cells[3]), float(cells[4])
    assert bare > 0 and eager > 0 and abs(ratio - eager / bare) < 0.01
    assert cells[-1] == "eager"  # no CUDA graph on the CPU
    assert report.count("```") == 4 and report.count("aten::") >= 6  # two profiles, three operators each


def test_the_cost_of_a_call_is_split_into_steps_and_a_fixed_part():
    from engine.evaluation.bench import CallCost

    # A stand-in whose steps cost 0.04 s and whose calls cost 0.3 s more: 20 steps 1.1 s, 100 steps 4.3 s.
    cost = CallCost.from_calls((0.3 + 20 * 0.04, 20), (0.3 + 100 * 0.04, 100))
    assert abs(cost.per_step_s - 0.04) < 1e-12 and abs(cost.fixed_s - 0.3) < 1e-12
    assert abs(cost.whole_per_step_s - 0.043) < 1e-12
    with pytest.raises(ValueError, match="more steps"):
        CallCost.from_calls((1.0, 20), (2.0, 20))


def test_repeated_calls_are_split_on_their_medians():
    from engine.evaluation.bench import CallCost

    # The stand-in of above, with one call of each length caught in a slow spell (2x): medians ignore it.
    shorts = [(1.1, 20), (2.2, 20), (1.1, 20)]
    longs = [(4.3, 100), (4.3, 100), (8.6, 100)]
    cost = CallCost.from_repeated_calls(shorts, longs)
    assert abs(cost.per_step_s - 0.04) < 1e-12 and abs(cost.fixed_s - 0.3) < 1e-12
    with pytest.raises(ValueError, match="one number of steps"):
        CallCost.from_repeated_calls([(1.1, 20), (1.0, 19)], longs)


def test_the_clean_bare_pass_is_measured_in_a_fresh_process(monkeypatch):
    from engine.core import threads
    from engine.evaluation.bench import bare_seconds, clean_bare_seconds

    monkeypatch.setenv(threads.ENV, "1")
    child = clean_bare_seconds("synthetic_shapes", 2, repeats=3)
    here = bare_seconds("synthetic_shapes", 2, repeats=3)
    assert child > 0 and here > 0


def test_the_speed_table_reports_whole_calls_against_the_clean_bare_pass(speed_table):
    rows = [line for line in speed_table.splitlines() if line.startswith("| 1 |")]
    cells = [cell.strip() for cell in rows[1].strip("|").split("|")]
    clean_child, clean_here, _, _, whole, whole_ratio, step, step_ratio, fixed, fixed_steps, _ = (
        float(c) for c in cells[1:12]
    )
    assert min(clean_child, clean_here, whole, step) > 0
    assert abs(whole_ratio - whole / clean_child) < 0.01 and abs(step_ratio - step / clean_child) < 0.01
    assert abs(fixed_steps - fixed / step) < 0.1


def test_seconds_per_explanation_times_each_photo_and_game(toy_model, tmp_path):
    import numpy as np
    from PIL import Image

    from engine.core.explanation import FGVisConfig
    from engine.evaluation.bench import run_seconds_benchmark

    photos = []
    for index, colour in enumerate((40, 200)):
        path = tmp_path / f"photo{index}.png"
        Image.fromarray(np.full((48, 40, 3), colour, np.uint8)).save(path)
        photos.append(path)
    table = run_seconds_benchmark(photos, device="cpu", config=FGVisConfig(steps=3, binarize=False), model=toy_model)
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| photo")]
    assert [row[0] for row in rows] == ["| photo", "| photo0.png", "| photo1.png"]
    assert all(len(row) == 7 and row[3] in ("met", "missed") for row in rows[1:])
    assert "preserve: median" in table and "delete: median" in table and "over 2 photos" in table
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    table = run_seconds_benchmark(
        [photos[0], tmp_path / "broken.png"], device="cpu", config=FGVisConfig(steps=2, binarize=False), model=toy_model
    )
    assert "| broken.png | failed:" in table and "over 1 photos" in table  # the others are kept
    with pytest.raises(ValueError, match="no photos"):
        run_seconds_benchmark([], device="cpu", model=toy_model)
