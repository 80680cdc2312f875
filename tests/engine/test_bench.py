"""The speed benchmarks' plumbing (their figures are printed, never asserted)."""

from __future__ import annotations

import torch

from engine.bench import device_name, run_speed_benchmark


def test_device_names_in_benchmark_tables(monkeypatch):
    assert device_name(torch.device("cpu")).startswith("CPU (")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"Test GPU {device}")
    assert device_name(torch.device("cuda:0")) == "Test GPU cuda:0"


def test_speed_benchmark_prints_a_row_per_batch_size():
    table = run_speed_benchmark(batch_sizes=(1,), repeats=1, device="cpu")
    (row,) = [line for line in table.splitlines() if line.startswith("| 1 |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    bare, off, on, on_ratio, _, counted, counted_ratio = (float(c) for c in cells[1:8])
    assert min(bare, off, on, counted) > 0
    assert abs(on_ratio - on / bare) < 0.01 and abs(counted_ratio - counted / bare) < 0.01
    assert cells[9:11] == ["-", "-"]  # no eager column on the CPU
    assert cells[12] == "eager"  # no CUDA graph on the CPU


def test_profile_benchmark_times_the_variants_and_lists_the_top_operators():
    from engine.bench import run_profile_benchmark

    report = run_profile_benchmark("efficientnet_lite0", batch_sizes=(1,), repeats=1, device="cpu", top=3)
    (row,) = [line for line in report.splitlines() if line.startswith("| 1 |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    bare, eager, ratio = float(cells[2]), float(cells[3]), float(cells[4])
    assert bare > 0 and eager > 0 and abs(ratio - eager / bare) < 0.01
    assert cells[-1] == "eager"  # no CUDA graph on the CPU
    assert report.count("```") == 4 and report.count("aten::") >= 6  # two profiles, three operators each
