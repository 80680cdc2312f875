"""The dataset review as one self-contained HTML report (pictures embedded as PNG data URIs; no Qt): per
class the Laplacian eigenvalues with the eigengap chosen, the 2-D embedding coloured by cluster, and the
clusters -- flagged ones first, with their reasons -- each with its mean evidence map, thumbnails of its
members and the reviewer's note. The GUI prints the same HTML to PDF (QTextDocument reads it)."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from engine.colormaps import apply_colormap
from engine.results.report import escape, multiline, page_head, png_data_uri

from .core import ClusterStats, MapClusters
from .results import ClassAnalysis, DatasetAnalysis, MapItem, class_summary

#: Cluster colours (Tableau 10), repeated past ten clusters; flagged clusters are outlined in FLAG_COLOUR.
PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip
FLAG_COLOUR = (220, 0, 0)
#: Member thumbnails per cluster in the report, and their side in pixels.
THUMBNAILS, THUMB_PX = 12, 64


def cluster_colour(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)]


def analysis_report(analysis: DatasetAnalysis, *, app_version: str = "", thumbnails: int = THUMBNAILS) -> str:
    """The whole review as a complete HTML document; classes with flagged clusters come first."""
    now = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    title = f"FGVis dataset review: {analysis.results_dir.name or analysis.results_dir}"
    classes = sorted(analysis.classes, key=lambda c: (not c.flagged, c.result is None, c.target))
    maps = sum(len(entry.items) for entry in analysis.classes)
    flagged = sum(len(entry.flagged) for entry in analysis.classes)
    settings = ", ".join(f"{key} {value}" for key, value in analysis.settings.items() if value is not None)
    parts = [
        page_head(title),
        f"<h1>{escape(title)}</h1>",
        f"<p>FGVis Studio {escape(app_version)} &middot; report {now} &middot; analysis {escape(analysis.created)}</p>",
        f"<p>Results folder <code>{escape(analysis.results_dir)}</code>; {escape(analysis.game)} maps; {maps} "
        f"map(s) in {len(analysis.classes)} class(es); <b>{flagged} flagged cluster(s)</b>.<br><small>Settings: "
        f"{escape(settings)}</small></p>",
        "<p><small>Each class's evidence maps are compared on a k-nearest-neighbour graph; the number of "
        "clusters is where the eigenvalues of its normalised Laplacian jump (the eigengap). A cluster is flagged "
        "when its evidence lies on the image border, or away from where the class's other clusters look while "
        "being small or tight: the pattern of a shortcut such as a tag or watermark. Flags are leads for a "
        "reviewer, not verdicts.</small></p>",
        _overview(classes),
    ]
    if analysis.skipped:
        parts.append(_skipped_table(analysis.skipped))
    for entry in classes:
        parts.append(_class_section(analysis, entry, thumbnails))
    parts.append("</body></html>")
    return "\n".join(parts)


def _overview(classes: list[ClassAnalysis]) -> str:
    rows = []
    for entry in classes:
        if entry.result is None:
            rows.append(
                f"<tr><td>{escape(entry.label)} ({entry.target})</td><td>{len(entry.items)}</td>"
                f"<td colspan='3'>not analysed: {escape(entry.message)}</td></tr>"
            )
            continue
        flagged = entry.flagged
        first = flagged[0].reasons[0] if flagged and flagged[0].reasons else ""
        mark = f"<b style='color: #c00000'>&#9888; {len(flagged)}</b>" if flagged else "0"
        rows.append(
            f"<tr><td>{escape(entry.label)} ({entry.target})</td><td>{len(entry.items)}</td>"
            f"<td>{entry.result.clusters_chosen} ({escape(entry.result.chosen_by)})</td><td>{mark}</td>"
            f"<td>{escape(first)}</td></tr>"
        )
    return (
        "<table border='1' cellspacing='0' cellpadding='3'><tr><th>class</th><th>maps</th><th>clusters</th>"
        f"<th>flagged</th><th>first reason</th></tr>{''.join(rows)}</table>"
    )


def _skipped_table(skipped: list[dict], limit: int = 50) -> str:
    rows = "".join(
        f"<tr><td>{escape(row.get('item') or '-')}</td><td>{escape(row.get('image') or '-')}</td>"
        f"<td>{escape(row['reason'])}</td></tr>"
        for row in skipped[:limit]
    )
    more = f"<p>... and {len(skipped) - limit} more.</p>" if len(skipped) > limit else ""
    return (
        f"<h3>Skipped: {len(skipped)} item(s)</h3><table border='1' cellspacing='0' cellpadding='3'>"
        f"<tr><th>item</th><th>image</th><th>reason</th></tr>{rows}</table>{more}"
    )


def _class_section(analysis: DatasetAnalysis, entry: ClassAnalysis, thumbnails: int) -> str:
    head = f"<h2 style='page-break-before: always'>Class {escape(entry.label)} ({entry.target})</h2>"
    if entry.result is None:
        return f"{head}<p>{escape(class_summary(entry))}</p>"
    result = entry.result
    flagged = {cluster.index for cluster in entry.flagged}
    eigen = _img(eigenvalue_plot(result.eigenvalues, result.clusters_chosen), "eigenvalues", 360)
    scatter = _img(scatter_plot(result.embedding, result.labels, flagged), "embedding", 360)
    parts = [
        head,
        f"<p>{escape(class_summary(entry))}; {result.neighbours} neighbours per map in the graph; embedding "
        f"{escape(analysis.settings.get('embedding', ''))}.</p>",
        f"<table cellspacing='6'><tr><td align='center'>{eigen}<br><small>smallest eigenvalues of the normalised "
        "Laplacian; the dashed line is the chosen gap</small></td>"
        f"<td align='center'>{scatter}<br><small>each map a point, coloured by cluster; flagged clusters ringed in "
        "red</small></td></tr></table>",
    ]
    for cluster in entry.ordered_clusters():
        parts.append(_cluster_section(analysis, entry, result, cluster, thumbnails))
    return "\n".join(parts)


def _cluster_section(
    analysis: DatasetAnalysis, entry: ClassAnalysis, result: MapClusters, cluster: ClusterStats, thumbnails: int
) -> str:
    colour = "#{:02x}{:02x}{:02x}".format(*cluster_colour(cluster.index))
    flag = "<span style='color: #c00000'>&#9888; flagged</span> &middot; " if cluster.flagged else ""
    heading = (
        f"<h3><span style='color: {colour}'>&#9632;</span> {flag}Cluster {cluster.index + 1}: {cluster.size} "
        f"map(s), {cluster.share:.0%} of the class</h3>"
    )
    reasons = "".join(f"<li>{escape(reason)}</li>" for reason in cluster.reasons)
    reasons = f"<ul>{reasons}</ul>" if reasons else ""
    items = [entry.items[i] for i in cluster.members]
    probs = [item.prob_original for item in items if item.prob_original is not None]
    kept = [item.prob_explanation for item in items if item.prob_explanation is not None]
    x, y = cluster.centre
    facts = [
        ("mean p(class) on the photos", f"{np.mean(probs):.3f}" if probs else "-"),
        ("mean p(class) on the explanations", f"{np.mean(kept):.3f}" if kept else "-"),
        ("evidence centre (x, y)", f"{x:.2f}, {y:.2f} of the image"),
        ("spread around the centre", f"{cluster.spread:.2f} of the image"),
        ("on the border", f"{cluster.border_share:.0%} of the evidence"),
        ("concentration", f"{cluster.concentration:.0%} of each map's evidence in its top 10 % of pixels"),
        ("overlap with the other clusters", "-" if cluster.overlap is None else f"{cluster.overlap:.2f} (cosine)"),
        ("tightness", f"{cluster.tightness:.2f} (1 = as spread as the class)"),
    ]
    table = "".join(f"<tr><td><b>{escape(k)}</b></td><td>{escape(v)}</td></tr>" for k, v in facts)
    mean = _img(mean_map_picture(result.mean_maps[cluster.index]), "mean evidence", 128)
    pictures = []
    for item, index in list(zip(items, cluster.members, strict=True))[:thumbnails]:
        picture = member_thumbnail(analysis, item, result.thumbs[index])
        caption = escape(_short(item.image))
        pictures.append(f"<td align='center'>{_img(picture, item.image, THUMB_PX)}<br><small>{caption}</small></td>")
    rows = "".join(f"<tr>{''.join(pictures[i : i + 6])}</tr>" for i in range(0, len(pictures), 6))
    more = f"<br><small>{len(items) - thumbnails} more not shown</small>" if len(items) > thumbnails else ""
    note = analysis.note(entry.target, cluster.index)
    note_html = f"<p><b>Reviewer's note:</b> {multiline(note)}</p>" if note.strip() else ""
    return (
        f"{heading}{reasons}<table cellspacing='6'><tr><td valign='top' align='center'>{mean}<br><small>mean evidence"
        f"</small></td><td valign='top'><table border='1' cellspacing='0' cellpadding='2'>{table}</table></td></tr>"
        f"</table><table cellspacing='2'>{rows}</table>{more}{note_html}"
    )


def member_thumbnail(analysis: DatasetAnalysis, item: MapItem, thumb: np.ndarray, size: int = THUMB_PX) -> np.ndarray:
    """The item's overlay picture from the batch (evidence over the model's input) at ``size`` px, or its
    stored small map in colour when the overlay cannot be read."""
    path = analysis.file_of(item, "overlay")
    if path is not None:
        try:
            with Image.open(path) as image:
                image.thumbnail((size, size))
                return np.asarray(image.convert("RGB"))
        except (OSError, ValueError, Image.DecompressionBombError):
            pass
    return np.asarray(Image.fromarray(apply_colormap(thumb.astype(np.float32) / 255.0)).resize((size, size)))


def mean_map_picture(mean: np.ndarray, size: int = 128) -> np.ndarray:
    """A cluster's mean map in colour (inferno, 0 .. its maximum), ``size`` px."""
    peak = float(mean.max())
    scaled = mean / peak if peak > 0 else mean
    return np.asarray(
        Image.fromarray(apply_colormap(scaled.astype(np.float32))).resize((size, size), Image.Resampling.NEAREST)
    )


def eigenvalue_plot(eigenvalues: np.ndarray, chosen: int, size: tuple[int, int] = (360, 180)) -> np.ndarray:
    """The ascending eigenvalues as dots with a dashed line in the chosen gap (after ``chosen`` of them)."""
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 40, 10, width - 10, height - 24
    draw.rectangle([left, top, right, bottom], outline=(160, 160, 160))
    values = np.asarray(eigenvalues, np.float64)
    peak = float(values.max()) if values.size and values.max() > 0 else 1.0
    for fraction in (0.0, 0.5, 1.0):
        y = bottom - fraction * (bottom - top)
        draw.line([left, y, right, y], fill=(230, 230, 230))
        draw.text((2, y - 6), f"{fraction * peak:.2f}", fill=(80, 80, 80))
    count = max(len(values), 1)
    step = (right - left) / count

    def x_of(index: float) -> float:
        return left + (index + 0.5) * step

    if 0 < chosen < len(values):
        gap_x = x_of(chosen - 0.5)
        for y in range(top, bottom, 6):
            draw.line([gap_x, y, gap_x, min(y + 3, bottom)], fill=FLAG_COLOUR)
    for index, value in enumerate(values):
        x, y = x_of(index), bottom - value / peak * (bottom - top)
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(31, 119, 180))
        draw.text((x - 3, bottom + 4), str(index + 1), fill=(80, 80, 80))
    draw.text((left + 4, top + 2), f"K = {chosen}", fill=(0, 0, 0))
    return np.asarray(image)


def scatter_plot(coords: np.ndarray, labels: np.ndarray, flagged: set[int], size: int = 360) -> np.ndarray:
    """The 2-D embedding: a dot per map in its cluster's colour, flagged clusters ringed in red."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, size - 1, size - 1], outline=(160, 160, 160))
    coords = np.asarray(coords, np.float64)
    if len(coords):
        low, high = coords.min(0), coords.max(0)
        span = np.where(high - low > 0, high - low, 1.0)
        points = 12 + (coords - low) / span * (size - 24)
        radius = 3 if len(coords) <= 2000 else 1.5
        order = np.argsort([label in flagged for label in labels], kind="stable")  # flagged on top
        for index in order:
            x, y = points[index]
            y = size - y
            box = [x - radius, y - radius, x + radius, y + radius]
            outline = FLAG_COLOUR if int(labels[index]) in flagged else None
            draw.ellipse(box, fill=cluster_colour(int(labels[index])), outline=outline)
    return np.asarray(image)


def write_report(analysis: DatasetAnalysis, path: str | Path, *, app_version: str = "") -> Path:
    """Write :func:`analysis_report` to ``path`` (all or nothing)."""
    from engine.results.export import write_all_or_nothing

    path = Path(path)
    write_all_or_nothing({path: analysis_report(analysis, app_version=app_version).encode("utf-8")})
    return path


def _img(pixels: np.ndarray, alt: str, width: int) -> str:
    return f"<img src='{png_data_uri(pixels)}' width='{width}' alt='{escape(alt)}'>"


def _short(text: str, limit: int = 18) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
