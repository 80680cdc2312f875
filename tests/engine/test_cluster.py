"""The batch on a local Ray instance (``num_cpus=2``): the same files as the local batch, resumable,
surviving a worker killed on purpose, and the error paths (Ray missing, an unreachable address).

One Ray instance serves the module (starting Ray costs ~10 s here); each run starts its own actors."""

from __future__ import annotations

import json
import socket
import sys

import numpy as np
import pytest
from PIL import Image

from engine import FGVisConfig, load_model
from engine.cli import main
from engine.evaluation import synthetic
from engine.results.batch import run_batch

ray = pytest.importorskip("ray", reason="the cluster extra is not installed")

from engine.evaluation.cluster_bench import mask_agreement  # noqa: E402
from engine.results.cluster import ClusterError, ModelSource, check_address, run_batch_on_ray  # noqa: E402

CONFIG = FGVisConfig(steps=8)
SOURCE = ModelSource("synthetic_shapes")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    data = synthetic.generate(4, 11)
    for index, pixels in enumerate(data.images):
        Image.fromarray(pixels).save(images / f"shape{index}.png")
    (images / "corrupt.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return images


def _index(out):
    return json.loads((out / "index.json").read_text())


def test_a_ray_run_resumes_and_writes_what_the_local_batch_writes(local_ray, folder, tmp_path):
    out = tmp_path / "ray"
    seen = []

    def stop_after_first() -> bool:
        return len(seen) >= 1

    first = run_batch_on_ray(
        SOURCE,
        folder,
        out,
        workers=2,
        config=CONFIG,
        batch_size=1,
        on_progress=seen.append,
        should_stop=stop_after_first,
    )
    assert first.cancelled and 1 <= len(first.written) < 4
    second = run_batch_on_ray(SOURCE, folder, out, workers=2, config=CONFIG, batch_size=2)
    assert not second.cancelled
    # Items a worker finished after the stop (in flight) are complete on disk and skipped too.
    assert len(second.written) + len(second.skipped) == 4 and set(first.written) <= set(second.skipped)
    assert [name for name, _ in second.failures] == ["corrupt.jpg"]
    assert second.failures[0][1]  # with its reason
    local = run_batch(load_model("synthetic_shapes"), folder, tmp_path / "local", config=CONFIG, batch_size=2)
    assert sorted(local.written) == sorted(second.written + second.skipped)
    for stem in local.written:
        ours, theirs = np.load(out / f"{stem}_mask.npy"), np.load(tmp_path / "local" / f"{stem}_mask.npy")
        assert np.allclose(ours, theirs, atol=1e-3)
    assert mask_agreement(out, tmp_path / "local", local.written).startswith("0.000% of values differ")
    rows = _index(out)
    assert sorted(row["image"] for row in rows if row["status"] == "done") == [f"shape{i}.png" for i in range(4)]
    assert [(row["image"], row["status"]) for row in rows if row["status"] != "done"] == [("corrupt.jpg", "failed")]


def test_a_worker_killed_mid_run_loses_nothing(local_ray, folder, tmp_path):
    out = tmp_path / "out"
    marker = tmp_path / "killed-once"
    summary = run_batch_on_ray(SOURCE, folder, out, workers=2, config=CONFIG, batch_size=1, fault_marker=str(marker))
    assert marker.exists()  # a worker did die
    done = [row["image"] for row in _index(out) if row["status"] == "done"]
    assert sorted(done) == [f"shape{i}.png" for i in range(4)]  # every item once, none twice
    assert len(summary.written) + len(summary.skipped) >= 4
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_without_ray_the_command_says_how_to_install_it(folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    assert main(["batch", str(folder), "--out", str(tmp_path / "out"), "--engine", "ray", "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "pip install -e '.[cluster]'" in err and "Traceback" not in err


def test_an_unreachable_address_is_refused_quickly(tmp_path, folder, capsys):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ClusterError, match="cannot reach the Ray cluster"):
        check_address(f"127.0.0.1:{port}", timeout_s=5)
    address = f"ray://127.0.0.1:{port}"
    code = main(
        ["batch", str(folder), "--out", str(tmp_path / "out"), "--engine", "ray", "--address", address, "--steps", "2"]
    )
    assert code == 2 and "cannot reach the Ray cluster" in capsys.readouterr().err
    with pytest.raises(ClusterError, match="not a Ray address"):
        check_address("nonsense")


def test_mask_agreement_counts_differing_values(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    mask = np.zeros((3, 10, 10), np.float32)
    np.save(first / "x_mask.npy", mask)
    flipped = mask.copy()
    flipped[0, 0, :3] = 1.0  # 3 of 300 values flip (a binarised mask on its threshold)
    flipped[1, 0, 0] = 5e-4  # within the tolerance
    np.save(second / "x_mask.npy", flipped)
    assert mask_agreement(first, second, ["x"]) == "1.000% of values differ (largest 1)"
    assert mask_agreement(first, second, ["x", "gone"]).endswith("; 1 item(s) missing")


CANCEL_SCRIPT = """
import json, sys
from pathlib import Path
from engine import FGVisConfig
from engine.results.cluster import ModelSource, run_batch_on_ray
summary = run_batch_on_ray(ModelSource("synthetic_shapes"), Path(sys.argv[1]), Path(sys.argv[2]), workers=2,
                           config=FGVisConfig(steps=300, patience=10**6), batch_size=1, should_stop=lambda: True)
print(json.dumps({"cancelled": summary.cancelled, "written": summary.written}))
"""


def test_a_cancel_ends_a_ray_run_it_started_at_once(folder, tmp_path):
    """A cancel that comes before any item is done stops the run at once: the Ray instance it started is
    shut down with its workers and nothing is written (before, the run waited for the first batch of
    explanations to finish). In a child process: the run must start its own Ray instance."""
    import os
    import subprocess

    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-c", CANCEL_SCRIPT, str(folder), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"cancelled": True, "written": []}
    assert not list(out.glob("*_mask.npy")) and not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert not [row for row in _index(out) if row["status"] == "done"]


def test_the_row_feed_settles_what_arrived_before_a_stop():
    """A stop still hands over the rows that had already arrived, and a stop after the last row does not
    mark a finished run as cancelled (no Ray needed: the feed reads any iterator)."""
    import threading

    from engine.results.cluster import _RowFeed

    finished = _RowFeed(iter([{"n": 1}, {"n": 2}]))
    finished._thread.join()  # both rows and the end are queued
    assert [row["n"] for row in finished.rows(lambda: True)] == [1, 2] and not finished.stopped

    release, delivered = threading.Event(), threading.Event()

    def slow():
        yield {"n": 1}
        delivered.set()
        release.wait()  # the next batch is still being explained
        yield {"n": 2}

    running = _RowFeed(slow())
    delivered.wait()
    assert [row["n"] for row in running.rows(lambda: True)] == [1] and running.stopped
    release.set()
    running.close(wait=True)
