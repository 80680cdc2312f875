"""fgvis bench quality: a 2-image smoke run in the default suite, the full benchmark marked slow."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

from engine.cli import main
from engine.evaluation.baselines import METHODS
from engine.evaluation.suite import BLUR_SIGMA, check_targets, run_quality_benchmark, sanity_check


def test_quality_smoke_run_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "quality"
    arguments = ["bench", "quality", "--count", "2", "--randomisation-items", "1", "--steps", "60", "--mp-steps", "30"]
    code = main([*arguments, "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| method | deletion AUC" in printed and "Cascading randomisation" in printed
    for section in ("Sanity check", "chance level", "fgvis (soft, its own e)", "8-bit survival", "Targets"):
        assert section in printed
    rows = list(csv.DictReader((out / "quality.csv").open()))
    assert [row["method"] for row in rows] == list(METHODS)
    for row in rows:
        values = [float(v) for k, v in row.items() if k != "method"]
        assert all(np.isfinite(values))
        assert 0 <= float(row["deletion_auc"]) <= 1 and 0 <= float(row["pointing"]) <= 1
        assert 0.09 <= float(row["concentration"]) <= 1
    details = json.loads((out / "quality.json").read_text())
    assert set(details["monitor"]) == {"on", "off"} and len(details["per_item"]["fgvis"]["deletion_auc"]) == 2
    # FGVis optimises towards the very blur the metrics remove pixels to.
    assert details["fgvis_config"]["blur_sigma"] == BLUR_SIGMA and details["reference"] == "blur"
    assert set(details["games"]) == {"fgvis", "fgvis_nodefense", "fgvis_preserve"}
    assert set(details["sanity"]) == {"deletion_auc", "insertion_auc", "p_after_equal_budget"}
    assert len(details["targets"]) == 6 and all(t["passed"] in (True, False) for t in details["targets"])
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


def test_quality_benchmark_without_randomisation_items_skips_that_check(tmp_path):
    """``--randomisation-items 0`` is accepted by the command line; it crashed the run at its very end."""
    from engine import FGVisConfig

    report = run_quality_benchmark(
        methods=("gradient",), count=2, randomisation_items=0, config=FGVisConfig(steps=3), out_dir=tmp_path
    )
    assert report.details["randomisation"] == {}
    assert "Cascading randomisation: not run" in (tmp_path / "quality.md").read_text()


def test_quality_benchmark_reports_a_missing_or_empty_folder(tmp_path, capsys):
    assert main(["bench", "quality", "--model", "synthetic_shapes", "--images", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["bench", "quality", "--images", str(tmp_path)]) == 2
    assert "no images" in capsys.readouterr().err


class MeanOfChannelZero(nn.Module):
    """Two classes; class 0's softmax probability is the mean of channel 0 (values in (0, 1))."""

    def forward(self, x):
        mean = x[:, 0].flatten(1).mean(1)
        return torch.stack([mean.log(), (1 - mean).log()], 1)


def test_sanity_check_passes_on_true_masks_and_fails_on_wrong_ones():
    masks = torch.zeros(3, 8, 8, dtype=torch.bool)
    masks[:, 2:5, 3:6] = True
    x = torch.where(masks[:, None], 0.9, 0.1).expand(3, 3, 8, 8)  # the object is the bright part
    reference = torch.full_like(x, 0.1)
    targets = torch.zeros(3, dtype=torch.long)
    module = MeanOfChannelZero()
    good = sanity_check(module, x, masks, targets, reference, [9, 9, 9], margin=0)
    assert all(entry["passed"] and entry["items_better"] == 3 for entry in good.values())
    # Deleting the whole object (9 bright pixels -> 0.1): mean 0.1, p 0.1.
    assert good["p_after_equal_budget"]["perfect"] == pytest.approx(0.1)
    wrong = sanity_check(module, x, ~masks, targets, reference, [9, 9, 9], margin=0)  # the background instead
    assert not any(entry["passed"] for entry in wrong.values())
    assert set(sanity_check(module, x, masks, targets, reference)) == {"deletion_auc", "insertion_auc"}


def _measured(**changes):
    measured = {
        "has_truth": True,
        "pointing": {"fgvis_preserve": 0.95, "fgvis": 0.7, "gradient": 0.8},
        "energy_inside": {"fgvis_preserve": 0.5, "fgvis": 0.3, "gradient": 0.2, "gradcam": 0.24},
        "equal_budget": {"fgvis": 0.2, "gradient": 0.3, "meaningful_perturbation": 0.25},
        "concentration_median": {"fgvis_preserve": 0.6, "fgvis": 0.4},
        "goal_rate": {"fgvis_preserve": 0.95, "fgvis": 0.85},
        "survival_8bit": {"fgvis": 0.96, "fgvis_preserve": 1.0},
        "inflation": {"on": 0.01, "off": 0.05},
    }
    return {**measured, **changes}


def _verdicts(measured):
    return {t["target"]: (t["value"], t["passed"]) for t in check_targets(measured)}


def test_targets_on_ground_truth():
    verdicts = _verdicts(_measured())
    assert verdicts["ground truth: FGVis preservation pointing >= 0.9"] == ("0.950", True)
    assert verdicts["ground truth: FGVis deletion pointing >= 0.9"] == ("0.700", False)
    # Best baseline energy is Grad-CAM's 0.24: 0.5 >= 0.48 passes, 0.3 does not.
    assert verdicts["ground truth: FGVis preservation energy inside >= 2x the best baseline's"] == (
        "0.500 vs 2 x 0.240 (gradcam)",
        True,
    )
    assert verdicts["ground truth: FGVis deletion energy inside >= 2x the best baseline's"][1] is False
    assert verdicts[">= 95 % of FGVis deletion explanations survive the 8-bit round trip"] == ("0.960", True)
    assert verdicts["score inflation without the defense >= 3x with it (zero reference)"] == (
        "0.0500 vs 3 x 0.0100",
        True,
    )
    assert not any(name.startswith("photos") for name in verdicts)  # photo targets only on photos


def test_targets_on_photos_and_what_cannot_be_measured():
    verdicts = _verdicts(_measured(has_truth=False, inflation={"on": 0.0, "off": 0.0}, survival_8bit={"fgvis": None}))
    assert verdicts["photos: median concentration of FGVis preservation >= 0.5"] == ("0.600", True)
    assert verdicts["photos: median concentration of FGVis deletion >= 0.5"] == ("0.400", False)
    assert verdicts["photos: FGVis preservation goal met on >= 90 % of images"][1] is True
    assert verdicts["photos: FGVis deletion goal met on >= 90 % of images"][1] is False
    # Below every baseline: 0.2 < 0.25 (Meaningful Perturbation, the best baseline).
    assert verdicts["photos: equal-budget deletion, binarised FGVis below every baseline"] == (
        "0.200 vs 0.250 (meaningful_perturbation)",
        True,
    )
    assert verdicts[">= 95 % of FGVis deletion explanations survive the 8-bit round trip"] == ("not measured", None)
    assert verdicts["score inflation without the defense >= 3x with it (zero reference)"][1] is False  # 0 >= 0
    assert not any(name.startswith("ground truth") for name in verdicts)
    worse = _verdicts(_measured(has_truth=False, equal_budget={"fgvis": 0.3, "meaningful_perturbation": 0.25}))
    assert worse["photos: equal-budget deletion, binarised FGVis below every baseline"][1] is False
    missing = _verdicts({"has_truth": True})
    assert all(passed is None for _, passed in missing.values())
