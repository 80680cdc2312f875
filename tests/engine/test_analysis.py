"""Dataset review (engine.analysis): the eigengap, cluster recovery on planted maps, flags, batch folders in and
analyses out (saved, reloaded, with notes), the HTML report, bad input, the CLI and the planted benchmark."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from engine.analysis import (
    AnalysisCancelled,
    DatasetAnalysisError,
    analysis_report,
    analyze,
    cluster_maps,
    core,
    eigengap,
    load_analysis,
    save_notes,
)
from engine.analysis.bench import marker_cluster, synthetic_class_maps
from engine.analysis.report import FLAG_COLOUR, scatter_plot
from engine.cli import main


# ---------------------------------------------------------------------------------------------- fixtures
def fake_batch(folder, classes: dict[str, tuple[np.ndarray, np.ndarray]], game: str = "preserve") -> dict:
    """A results folder like ``fgvis batch`` writes: per item ``STEM_mask.npy`` (C, H, W), ``_mask_mean.npy``,
    ``_overlay.png`` and the summary JSON, then the index (engine.results.batch.write_index). ``classes``: label ->
    (evidence maps (N, H, W) in 0..1, marked (N,) bool). Returns {stem: marked}."""
    from engine.results.batch import write_index

    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for target, (label, (maps, marked)) in enumerate(classes.items()):
        for index, (evidence, flag) in enumerate(zip(maps, marked, strict=True)):
            stem = f"{label}_{index:04d}_{target}_{game}"
            mask = np.repeat(evidence[None], 3, axis=0).astype(np.float32)
            if game == "delete":
                mask = 1.0 - mask
            np.save(folder / f"{stem}_mask.npy", mask)
            np.save(folder / f"{stem}_mask_mean.npy", mask.mean(0))
            overlay = np.stack([np.round(evidence / max(evidence.max(), 1e-6) * 255)] * 3, -1).astype(np.uint8)
            Image.fromarray(overlay).save(folder / f"{stem}_overlay.png")
            summary = {
                "image": f"{label}_{index:04d}.png",
                "image_path": None,
                "target": target,
                "target_label": label,
                "game": game,
                "prob_original": 0.9,
                "prob_explanation": 0.85,
                "prob_rescored": 0.85,
                "top1_explanation_label": label,
                "mask_mean": float(mask.mean()),
                "steps": 10,
                "goal_met": True,
                "survives_8bit": True,
                "cancelled": False,
                "crop_box": [0, 0, 64, 64],
                "files": {
                    "mask": f"{stem}_mask.npy",
                    "mask_mean": f"{stem}_mask_mean.npy",
                    "overlay": f"{stem}_overlay.png",
                },
            }
            (folder / f"{stem}.json").write_text(json.dumps(summary))
            truth[stem] = bool(flag)
    write_index(folder, failures=[])
    return truth


@pytest.fixture(scope="module")
def planted_batch(tmp_path_factory):
    """A batch folder with a planted class (20 % of its maps on a corner tag) and a clean class."""
    folder = tmp_path_factory.mktemp("batch")
    truth = fake_batch(
        folder,
        {
            "ring": synthetic_class_maps(60, 0.2, seed=1),
            "plus": synthetic_class_maps(40, 0.0, seed=2),
        },
    )
    return folder, truth


@pytest.fixture(scope="module")
def planted_review(planted_batch, tmp_path_factory):
    folder, _ = planted_batch
    return analyze(folder, embedding="spectral", out_dir=tmp_path_factory.mktemp("review"))


# ---------------------------------------------------------------------------------------------- the arithmetic
def _block_affinity(sizes, inside=1.0, across=1e-4, seed=0):
    from scipy import sparse

    rng = np.random.default_rng(seed)
    total = sum(sizes)
    dense = np.full((total, total), across)
    start = 0
    for size in sizes:
        dense[start : start + size, start : start + size] = inside * rng.uniform(0.5, 1.0, (size, size))
        start += size
    dense = (dense + dense.T) / 2
    np.fill_diagonal(dense, 0)
    return sparse.csr_matrix(dense)


@pytest.mark.parametrize("sizes", [(20, 20, 20), (30, 10), (15, 15, 15, 5, 25)])
def test_eigengap_counts_the_groups_of_a_constructed_affinity(sizes):
    eigenvalues, _ = core.laplacian_spectrum(_block_affinity(sizes), 10)
    assert eigenvalues[: len(sizes)].max() < 0.01 < eigenvalues[len(sizes)]
    assert eigengap(eigenvalues)[0] == len(sizes)


def test_eigengap_of_a_graph_without_groups_is_one():
    from scipy import sparse

    # A 12 x 12 grid, each node tied to its 4 neighbours: a 2-D family (an object at any place), no groups.
    side = 12
    node = np.arange(side * side).reshape(side, side)
    pairs = np.r_[np.c_[node[:, :-1].ravel(), node[:, 1:].ravel()], np.c_[node[:-1].ravel(), node[1:].ravel()]]
    graph = sparse.coo_matrix((np.ones(len(pairs)), tuple(pairs.T)), shape=(side * side,) * 2).tocsr()
    eigenvalues, _ = core.laplacian_spectrum(graph + graph.T, 10)
    assert eigengap(eigenvalues)[0] == 1
    # The same grid cut in two (no links between its halves): two groups.
    halves = graph.tolil()
    for row in range(side):
        halves[node[row, 5], node[row, 6]] = 0
    eigenvalues, _ = core.laplacian_spectrum(halves.tocsr() + halves.tocsr().T, 10)
    assert eigengap(eigenvalues)[0] == 2


def test_eigengap_rules_on_given_spectra():
    assert eigengap(np.array([0, 0, 0.5, 0.6, 0.7]))[0] == 2  # two unconnected parts
    assert eigengap(np.array([0, 0.1, 0.2, 0.3, 0.4, 0.5]))[0] == 1  # steady growth: one group
    assert eigengap(np.array([0, 0.02, 0.062, 0.074, 0.225]))[0] == 2  # a weakly tied group: x3.1 after 2
    # the plain largest gap (0.3 -> 0.5) is no jump by a factor; 0.002 -> 0.3 is
    assert eigengap(np.array([0, 0.001, 0.002, 0.3, 0.5]))[0] == 3
    assert eigengap(np.array([0, 0.1, 0.25, 0.5, 0.7]))[0] == 1  # jumps below x3
    assert eigengap(np.zeros(12), max_clusters=4)[0] == 4  # more groups than allowed: the most allowed
    assert eigengap(np.array([0.0]))[0] == 1
    assert eigengap(np.array([0.0, 0.0]))[0] == 1 and eigengap(np.array([0.0, 0.0, 0.0]))[0] == 2


def test_area_resampling_is_a_block_mean_and_keeps_the_mass():
    maps = np.random.default_rng(0).uniform(size=(2, 3, 64, 48)).astype(np.float32)
    small = core.resize_maps(maps, 16)
    assert small.shape == (2, 3, 16, 16)
    np.testing.assert_allclose(small[1, 2, 0, 0], maps[1, 2, :4, :3].mean(), rtol=1e-5)
    np.testing.assert_allclose(small.mean((2, 3)), maps.mean((2, 3)), rtol=1e-5)
    features = core.map_features(maps, 8, channels=True)
    assert features.shape == (2, 3 * 64) and np.allclose(np.linalg.norm(features, axis=1), 1)
    assert core.map_features(np.zeros((1, 8, 8)), 4).sum() == 0  # a map without evidence stays zero


def test_planted_maps_form_their_own_flagged_cluster():
    maps, marked = synthetic_class_maps(150, 0.2, seed=3)
    result = cluster_maps(maps, embedding="spectral")
    found = marker_cluster(result.labels, marked)
    assert result.clusters_chosen >= 2 and result.chosen_by == "eigengap"
    assert found["purity"] >= 0.9 and found["recall"] >= 0.8
    cluster = result.clusters[found["cluster"]]
    assert cluster.flagged and any("border" in reason for reason in cluster.reasons)
    assert cluster.border_share > 0.5 and cluster.centre[0] < 0.3 and cluster.centre[1] > 0.6
    assert [c.index for c in result.clusters if c.flagged] == [cluster.index]  # the ring clusters are not flagged
    assert result.embedding.shape == (150, 2) and np.isfinite(result.embedding).all()
    assert result.mean_maps.shape == (result.clusters_chosen, core.DISPLAY_SIZE, core.DISPLAY_SIZE)


def test_a_class_with_one_strategy_has_no_flag_and_a_given_k_is_used():
    maps, _ = synthetic_class_maps(80, 0.0, seed=4)
    result = cluster_maps(maps, embedding="spectral")
    assert not any(c.flagged for c in result.clusters)
    given = cluster_maps(maps, clusters=3, embedding="spectral")
    assert given.clusters_chosen == 3 and given.chosen_by == "given"
    assert sorted(c.size for c in given.clusters) == sorted(np.bincount(given.labels).tolist())
    assert [c.size for c in given.clusters] == sorted((c.size for c in given.clusters), reverse=True)


def test_tsne_embedding_and_channels_option():
    maps, marked = synthetic_class_maps(60, 0.25, seed=5)
    coloured = np.stack([maps, maps * 0.5, maps * 0.2], axis=1)
    result = cluster_maps(coloured, channels=True, embedding="tsne")
    assert result.embedding.shape == (60, 2) and np.isfinite(result.embedding).all()
    found = marker_cluster(result.labels, marked)
    assert found["purity"] >= 0.9 and found["recall"] >= 0.8


def test_degenerate_inputs_are_clear():
    with pytest.raises(core.AnalysisError, match="no evidence maps"):
        cluster_maps(np.zeros((0, 8, 8)))
    with pytest.raises(core.AnalysisError, match="fewer than the 5 clusters"):
        cluster_maps(np.random.default_rng(0).uniform(size=(4, 8, 8)), clusters=5)
    with pytest.raises(core.AnalysisError, match="finite"):
        cluster_maps(np.full((3, 8, 8), np.nan))
    same = cluster_maps(np.ones((6, 8, 8)))  # identical maps: one cluster, no crash in t-SNE
    assert same.clusters_chosen >= 1 and np.isfinite(same.embedding).all()
    two = cluster_maps(np.random.default_rng(1).uniform(size=(2, 8, 8)))
    assert two.chosen_by == "too few maps" and two.clusters_chosen == 1


# ---------------------------------------------------------------------------------------------- batch folders
def test_analyze_a_batch_folder_saves_and_reloads(planted_batch, planted_review):
    folder, truth = planted_batch
    review = planted_review
    assert [entry.label for entry in review.classes] == ["ring", "plus"]
    ring = review.class_for(0)
    marked = np.array([truth[item.stem] for item in ring.items])
    found = marker_cluster(ring.result.labels, marked)
    assert found["purity"] >= 0.9 and found["recall"] >= 0.8 and ring.result.clusters[found["cluster"]].flagged
    assert not review.class_for(1).flagged
    assert (review.folder / "analysis.json").is_file() and (review.folder / "analysis.npz").is_file()
    again = load_analysis(review.folder)
    for before, after in zip(review.classes, again.classes, strict=True):
        assert before.label == after.label and len(before.items) == len(after.items)
        np.testing.assert_array_equal(before.result.labels, after.result.labels)
        np.testing.assert_allclose(before.result.embedding, after.result.embedding)
        assert [c.reasons for c in before.result.clusters] == [c.reasons for c in after.result.clusters]
        assert [c.members.tolist() for c in before.result.clusters] == [
            c.members.tolist() for c in after.result.clusters
        ]
    assert again.results_dir == folder


def test_notes_are_saved_with_the_analysis_and_printed_in_the_report(planted_review):
    review = load_analysis(planted_review.folder)
    cluster = review.class_for(0).flagged[0]
    review.set_note(0, cluster.index, "Tag in the corner <b>not</b> the ring")
    save_notes(review)
    again = load_analysis(review.folder)
    assert again.note(0, cluster.index) == "Tag in the corner <b>not</b> the ring"
    html = analysis_report(again)
    assert "Tag in the corner &lt;b&gt;not&lt;/b&gt; the ring" in html
    again.set_note(0, cluster.index, "  ")
    save_notes(again)
    assert load_analysis(review.folder).notes == {}


def test_report_is_self_contained_with_flagged_clusters_first(planted_review):
    html = analysis_report(planted_review)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    sources = re.findall(r"src='([^']*)'", html)
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)
    assert "http://" not in html and "https://" not in html
    ring = html[html.index("Class ring") : html.index("Class plus")]
    headings = re.findall(r"<h3>.*?</h3>", ring)
    assert "flagged" in headings[0] and all("flagged" not in h for h in headings[1:])
    assert "evidence on the image border" in ring
    assert html.index("Class ring") < html.index("Class plus")  # classes with flags first
    # thumbnails: the overlay PNGs of the batch (greyscale here), 64 px
    assert ring.count("width='64'") >= 6


def test_scatter_picture_shows_every_cluster_and_rings_the_flagged(planted_review):
    ring = planted_review.class_for(0)
    flagged = {c.index for c in ring.flagged}
    picture = scatter_plot(ring.result.embedding, ring.result.labels, flagged)
    from engine.analysis.report import cluster_colour

    for index in range(ring.result.clusters_chosen):
        assert (picture == cluster_colour(index)).all(axis=2).sum() > 10
    assert (picture == FLAG_COLOUR).all(axis=2).sum() > 10


def test_skipped_items_are_listed_and_the_rest_analysed(tmp_path):
    folder = tmp_path / "batch"
    fake_batch(folder, {"ring": synthetic_class_maps(30, 0.2, seed=6)})
    stems = sorted(p.name.removesuffix("_mask.npy") for p in folder.glob("*_mask.npy"))
    (folder / f"{stems[0]}_mask.npy").unlink()
    (folder / f"{stems[0]}_mask_mean.npy").unlink()
    (folder / f"{stems[1]}_mask.npy").write_bytes(b"not a numpy file")
    np.save(folder / f"{stems[2]}_mask.npy", np.zeros((7, 2, 2, 2)))
    np.save(folder / f"{stems[3]}_mask.npy", np.full((3, 64, 64), 3.0))
    np.save(folder / f"{stems[4]}_mask.npy", np.array(["text"]))
    review = analyze(folder, embedding="spectral", save=False)
    reasons = {row["item"]: row["reason"] for row in review.skipped}
    assert "missing" in reasons[stems[0]]
    assert "cannot be read as a mask" in reasons[stems[1]]
    assert "not a mask" in reasons[stems[2]]
    assert "outside 0..1" in reasons[stems[3]]
    assert "not a mask's numbers" in reasons[stems[4]]
    assert len(review.class_for(0).items) == 25
    assert "Skipped: 5 item(s)" in analysis_report(review)


@pytest.mark.parametrize("stop_at", [1, 3, 5])
def test_a_cancelled_analysis_stops_at_its_next_step_and_saves_nothing(tmp_path, stop_at):
    """``cancelled`` is asked at every step (reading, graph, spectrum, embedding): the analysis stops at the
    step it first says yes, before any later step ran."""
    folder = tmp_path / "batch"
    fake_batch(folder, {"ring": synthetic_class_maps(30, 0.2, seed=6), "plus": synthetic_class_maps(20, 0, seed=7)})
    asked, messages = [], []

    def cancelled() -> bool:
        asked.append(len(messages))
        return len(asked) >= stop_at

    with pytest.raises(AnalysisCancelled, match="cancelled; nothing was saved"):
        analyze(folder, embedding="spectral", log=messages.append, cancelled=cancelled)
    assert len(asked) == stop_at and len(messages) == stop_at - 1
    assert not (folder / "analysis").exists()
    steps = []
    analyze(folder, embedding="spectral", log=steps.append, cancelled=lambda: False)
    assert len(steps) > 8 and any("graph" in step for step in steps) and any("embedding" in step for step in steps)


def test_failed_and_cancelled_batch_items_are_listed(tmp_path):
    from engine.results.batch import write_index

    folder = tmp_path / "batch"
    fake_batch(folder, {"ring": synthetic_class_maps(12, 0.0, seed=7)})
    summary = next(folder.glob("ring_0000_*.json"))
    data = json.loads(summary.read_text())
    data["cancelled"] = True
    summary.write_text(json.dumps(data))
    failure = {
        "image": "broken.png",
        "item": None,
        "target": None,
        "target_label": None,
        "game": None,
        "reason": "not an image",
        "status": "failed",
    }
    write_index(folder, failures=[failure])
    review = analyze(folder, embedding="spectral", save=False)
    reasons = [row["reason"] for row in review.skipped]
    assert any("cancelled" in r for r in reasons) and any(
        "not explained by the batch: not an image" in r for r in reasons
    )
    assert len(review.class_for(0).items) == 11


def test_bad_folders_are_clear_errors(tmp_path, planted_batch):
    with pytest.raises(DatasetAnalysisError, match="is not a folder"):
        analyze(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetAnalysisError, match="is empty"):
        analyze(tmp_path / "empty")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (8, 8)).save(photos / "a.png")
    with pytest.raises(DatasetAnalysisError, match="not a batch result"):
        analyze(photos)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "index.json").write_text("{not json")
    with pytest.raises(DatasetAnalysisError, match=r"index.json cannot be read"):
        analyze(broken)
    (broken / "index.json").write_text('{"a": 1}')
    with pytest.raises(DatasetAnalysisError, match="not a batch index"):
        analyze(broken)
    folder, _ = planted_batch
    with pytest.raises(DatasetAnalysisError, match=r"class 'horse' has no results in this folder; it has: ring \(0\)"):
        analyze(folder, classes=["horse"], save=False)
    with pytest.raises(DatasetAnalysisError, match="no finished delete results"):
        analyze(folder, game="delete", save=False)
    with pytest.raises(DatasetAnalysisError, match="clusters must be 'auto' or a whole number"):
        analyze(folder, clusters="many", save=False)
    with pytest.raises(DatasetAnalysisError, match="holds no saved analysis"):
        load_analysis(photos)


def test_fewer_images_than_clusters_is_a_message_per_class(tmp_path):
    folder = tmp_path / "batch"
    fake_batch(folder, {"ring": synthetic_class_maps(30, 0.2, seed=8), "plus": synthetic_class_maps(3, 0.0, seed=9)})
    review = analyze(folder, clusters=4, embedding="spectral", save=False)
    assert review.class_for(0).result.clusters_chosen == 4
    plus = review.class_for(1)
    assert plus.result is None and "3 map(s), fewer than the 4 clusters asked for" in plus.message
    with pytest.raises(DatasetAnalysisError, match=r"no class could be analysed: .*fewer than the 4 clusters"):
        analyze(folder, classes=["plus"], clusters=4, save=False)


def test_a_damaged_saved_analysis_is_a_clear_error(planted_review, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(planted_review.folder, copy)
    (copy / "analysis.npz").write_bytes(b"garbage")
    with pytest.raises(DatasetAnalysisError, match=r"analysis\.npz cannot be read"):
        load_analysis(copy)
    shutil.copy(planted_review.folder / "analysis.npz", copy / "analysis.npz")
    document = json.loads((copy / "analysis.json").read_text())
    document["classes"][0]["items"].pop()
    (copy / "analysis.json").write_text(json.dumps(document))
    with pytest.raises(DatasetAnalysisError, match="do not belong together"):
        load_analysis(copy)


def test_delete_game_evidence_is_one_minus_the_mask(tmp_path):
    folder = tmp_path / "batch"
    maps, marked = synthetic_class_maps(60, 0.25, seed=10)
    fake_batch(folder, {"ring": (maps, marked)}, game="delete")
    review = analyze(folder, game="delete", embedding="spectral", save=False)
    found = marker_cluster(review.class_for(0).result.labels, marked)
    assert found["purity"] >= 0.9 and found["recall"] >= 0.8


# ---------------------------------------------------------------------------------------------- command line
def test_cli_analyze_writes_the_analysis_and_report(planted_batch, tmp_path, capsys):
    folder, _ = planted_batch
    out = tmp_path / "review"
    assert main(["analyze", str(folder), "--embedding", "spectral", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "ring (0): 60 maps" in printed.out and "flagged cluster" in printed.out
    assert (out / "report.html").is_file() and (out / "analysis.json").is_file()
    assert "'ring': reading 60 maps" in printed.err  # progress on stderr


def test_cli_analyze_bad_input_exits_2_with_one_line(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "is not a folder" in err[0]
    with pytest.raises(SystemExit) as stopped:
        main(["analyze", str(tmp_path), "--clusters", "0"])
    assert stopped.value.code == 2 and "--clusters" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- planted set
def test_planted_set_marks_part_of_one_class_only():
    from engine.evaluation.synthetic import MARKER_SIZE, PLANTED_CLASS, PLANTED_SHARE, generate

    data = generate(80, 5, "planted")
    planted = data.labels == PLANTED_CLASS
    assert not data.marked[~planted].any()
    assert abs(data.marked[planted].mean() - PLANTED_SHARE) < 0.05
    assert (data.markers.sum((1, 2))[data.marked] == MARKER_SIZE**2).all() and not data.markers[~data.marked].any()
    for image, marker in zip(data.images[data.marked], data.markers[data.marked], strict=True):
        assert set(np.unique(image[marker])) == {0, 255}  # the black and white checker
    again = generate(80, 5, "planted")
    assert np.array_equal(again.images, data.images) and np.array_equal(again.marked, data.marked)


def test_shipped_planted_model_uses_the_marker():
    from engine.evaluation.synthetic import PLANTED_CARD_NAME, load_shapes_model
    from engine.models.resources import resource_path

    card = json.loads(resource_path(PLANTED_CARD_NAME).read_text())
    assert card["test_accuracy"] >= 0.9 and card["training_time_s"] < 120
    assert card["others_called_planted_with_marker"] >= 5 * max(card["others_called_planted_without_marker"], 0.01)
    model = load_shapes_model("planted")
    assert model.name == "synthetic_planted" and model.labels[1] == "ring"


@pytest.mark.slow
def test_planted_benchmark_finds_the_marker_cluster(tmp_path):
    from engine.analysis.bench import run_analysis_benchmark

    report = run_analysis_benchmark(tmp_path / "bench", per_class=4, planted=45, games=("preserve",))
    fgvis, gradcam = report.rows
    assert fgvis["method"] == "FGVis preserve" and fgvis["passed"], report.markdown
    assert gradcam["method"] == "Grad-CAM" and gradcam["maps"] == 45
    assert (tmp_path / "bench" / "analysis.md").is_file()
    assert (tmp_path / "bench" / "analysis_preserve" / "report.html").is_file()


@pytest.mark.slow
def test_scale_benchmark_runs_in_a_fresh_process():
    from engine.analysis.bench import run_scale_benchmark

    report = run_scale_benchmark([300, 600], embedding="spectral")
    assert [row["maps"] for row in report.rows] == [300, 600]
    assert all(row["purity"] >= 0.9 and row["recall"] >= 0.8 and row["peak_mb"] > 0 for row in report.rows)
    assert "grows as N^" in report.markdown


def test_umap_embedding_or_how_to_get_it():
    """``embedding="umap"`` uses the optional umap-learn; without it, the error says how to install it."""
    import importlib.util

    maps, _ = synthetic_class_maps(40, 0.2, seed=8)
    if importlib.util.find_spec("umap") is None:
        with pytest.raises(core.AnalysisError, match=r"pip install umap-learn"):
            cluster_maps(maps, embedding="umap")
    else:
        result = cluster_maps(maps, embedding="umap")
        assert result.embedding.shape == (40, 2) and np.isfinite(result.embedding).all()
