"""fgvis bench quality: a 2-image smoke run in the default suite, the full benchmark marked slow."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from engine.baselines import METHODS
from engine.cli import main
from engine.evaluation import run_quality_benchmark


def test_quality_smoke_run_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "quality"
    code = main(["bench", "quality", "--count", "2", "--randomisation-items", "1", "--steps", "60",
                 "--mp-steps", "30", "--out", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "| method | deletion AUC" in printed and "Cascading randomisation" in printed
    rows = list(csv.DictReader((out / "quality.csv").open()))
    assert [row["method"] for row in rows] == list(METHODS)
    for row in rows:
        values = [float(v) for k, v in row.items() if k != "method"]
        assert all(np.isfinite(values))
        assert 0 <= float(row["deletion_auc"]) <= 1 and 0 <= float(row["pointing"]) <= 1
    details = json.loads((out / "quality.json").read_text())
    assert set(details["monitor"]) == {"on", "off"} and len(details["per_item"]["fgvis"]["deletion_auc"]) == 2
    for name in ("deletion_curves.png", "insertion_curves.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_full_quality_benchmark_on_the_synthetic_model(tmp_path):
    report = run_quality_benchmark(out_dir=tmp_path)
    rows = {row["method"]: row for row in report.rows}
    assert set(rows) == set(METHODS) and len(report.details["items"]) == 32
    monitor = report.details["monitor"]
    # The defense's purpose: less activation mass above h(x) in the preserved explanation.
    assert np.mean(monitor["on"]["mass_above"]) < np.mean(monitor["off"]["mass_above"])


def test_quality_benchmark_reports_a_missing_or_empty_folder(tmp_path, capsys):
    assert main(["bench", "quality", "--model", "synthetic_shapes", "--images", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["bench", "quality", "--images", str(tmp_path)]) == 2
    assert "no images" in capsys.readouterr().err
