"""The ``fgvis`` command line, run in-process (and once as the installed console script)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from engine.cli import main


def test_predict_prints_top5(samples, capsys):
    assert main(["predict", str(samples["coffee"])]) == 0
    out = capsys.readouterr().out
    assert "espresso" in out and out.count("%") == 5


def test_predict_json(samples, capsys):
    assert main(["predict", "--json", "--top", "2", str(samples["coffee"])]) == 0
    report = json.loads(capsys.readouterr().out)
    [(path, predictions)] = report.items()
    assert path.endswith("coffee.jpg") and predictions[0]["label"] == "espresso" and len(predictions) == 2


def test_explain_writes_mask_images_and_summary(samples, tmp_path, capsys):
    out = tmp_path / "results"
    code = main(
        ["explain", str(samples["coffee"]), "--steps", "3", "--game", "both", "--out", str(out), "--target", "espresso"]
    )
    assert code == 0
    for game in ("preserve", "delete"):
        mask = np.load(out / f"coffee_{game}_mask.npy")
        assert mask.shape == (3, 224, 224) and mask.dtype == np.float32
        assert mask.min() >= 0 and mask.max() <= 1
        assert Image.open(out / f"coffee_{game}_explanation.png").size == (224, 224)
        assert Image.open(out / f"coffee_{game}_evidence.png").mode == "RGB"
        summary = json.loads((out / f"coffee_{game}.json").read_text())
        assert summary["target"] == 967 and summary["target_label"] == "espresso"
        assert summary["game"] == game and summary["steps"] == 3 and summary["cancelled"] is False
        assert len(summary["weights_sha256"]) == 64 and summary["config"]["steps"] == 3
        assert 0 < summary["prob_original"] <= 1
        assert summary["scale"] == "robust" and summary["scale_text"].startswith("0 - ")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_explain_same_file_name_twice_does_not_overwrite(samples, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(samples["chelsea"], other / "coffee.jpg")
    out = tmp_path / "out"
    assert main(["explain", str(samples["coffee"]), str(other / "coffee.jpg"), "--steps", "1", "--out", str(out)]) == 0
    summaries = sorted(out.glob("coffee_*_preserve.json"))  # coffee_<hash of its path>_preserve.json, twice
    assert len(summaries) == 2
    assert {json.loads(p.read_text())["target_label"] for p in summaries} == {"espresso", "tiger cat"}


def test_bad_inputs_exit_2_with_a_message(samples, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    assert main(["explain", str(broken), "--steps", "1", "--out", str(tmp_path)]) == 2
    assert "error: " in capsys.readouterr().err
    assert main(["explain", str(samples["coffee"]), "--target", "1000", "--steps", "1", "--out", str(tmp_path)]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(["predict", str(samples["coffee"]), "--model", "resnet18", "--weights", str(broken)]) == 2
    assert "broken.jpg" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_output_folder_exits_1(samples, tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert main(["explain", str(samples["coffee"]), "--steps", "1", "--out", str(out)]) == 1
        assert "cannot write" in capsys.readouterr().err
    finally:
        out.chmod(0o700)


def test_unwritable_output_exits_1(samples, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should be")
    assert main(["explain", str(samples["coffee"]), "--steps", "1", "--out", str(blocker / "out")]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_console_script_is_installed():
    executable = shutil.which("fgvis", path=os.path.dirname(sys.executable))
    assert executable, "the fgvis console script is not installed beside this Python"
    done = subprocess.run([executable, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "explain" in done.stdout


def test_ctrl_c_stops_cleanly_and_keeps_partial_results(samples, tmp_path):
    """A real SIGINT to a real process: partial results are written and marked cancelled."""
    import signal

    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "engine", "explain", str(samples["coffee"]), "--steps", "100000", "--out", str(out)],
        stderr=subprocess.PIPE,
        text=True,
    )
    # Wait for the first progress line: the optimisation is running.
    for line in process.stderr:
        if "preserve" in line and "/100000" in line:
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    summary = json.loads((out / "coffee_preserve.json").read_text())
    assert summary["cancelled"] is True and 0 < summary["steps"] < 100000


def test_explain_refuses_to_overwrite_without_the_flag(samples, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["explain", str(samples["coffee"]), "--steps", "1", "--out", str(out)]
    assert main(args) == 0
    before = (out / "coffee_preserve.json").read_bytes()
    assert main(args) == 1
    assert "already exist" in capsys.readouterr().err
    assert (out / "coffee_preserve.json").read_bytes() == before
    assert main([*args, "--overwrite"]) == 0


def test_batch_command_lists_bad_files_resumes_and_rescores(samples, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(samples["coffee"], images / "coffee.jpg")
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    assert main(["batch", str(images), "--out", str(out), "--steps", "2", "--scale", "fixed", "--blur-sigma", "8"]) == 2
    captured = capsys.readouterr()
    assert "1 written" in captured.out and "broken.jpg" in captured.err
    summary = json.loads((out / "coffee_967_preserve.json").read_text())
    assert summary["config"]["blur_sigma"] == 8 and 0 <= summary["prob_reference"] <= 1
    assert abs(summary["prob_rescored"] - summary["prob_explanation"]) < 0.01  # 8-bit PNG round trip
    assert (summary["scale"], summary["value_range"]) == ("fixed", [0.0, 1.0])
    assert (out / "index.html").is_file() and (out / "index.csv").read_text().count("\n") == 3
    assert "broken.jpg" in (out / "index.csv").read_text() and "listed in the index" in captured.out
    assert main(["batch", str(images), "--out", str(out), "--steps", "2"]) == 2
    assert "0 written, 1 already done" in capsys.readouterr().out


def test_early_stop_benchmark_on_a_folder_of_photos(samples, tmp_path, capsys):
    folder = tmp_path / "held_out"
    folder.mkdir()
    shutil.copy(samples["coffee"], folder / "mug.jpg")
    assert main(["bench", "early-stop", "--images", str(folder), "--steps", "3", "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "one given photo per run" in table and table.count("| mug |") == 2  # preserve and delete
    assert main(["bench", "early-stop", "--images", str(tmp_path / "missing")]) == 2
    assert f"{tmp_path / 'missing'} is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["bench", "early-stop", "--images", str(tmp_path / "empty")]) == 2
    assert f"no images in {tmp_path / 'empty'}" in capsys.readouterr().err
