"""Review reports as self-contained HTML (images embedded as PNG data URIs), written without Qt.

The same HTML is what the GUI prints to PDF (Qt's QTextDocument reads data URIs), so it sticks to
simple tables and inline styles that both browsers and QTextDocument render."""

from __future__ import annotations

import base64
import datetime as _dt
import html
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from engine.colormaps import DEFAULT_SCALE, DisplayRange, display_range, format_value, lookup_table

from .export import compose_overlay
from .files import png_bytes
from .record import ExplanationRecord, monitor_summary

PICTURE_SIZE = 224


def image_report(
    image_name: str,
    records: Sequence[ExplanationRecord],
    *,
    photo: np.ndarray | None = None,
    image_notes: str = "",
    app_version: str = "",
    colormap: str = "inferno",
    scale: str = DEFAULT_SCALE,
) -> str:
    """One report for one image and all its results: a complete HTML document. Each result's overlay and
    colour bar use ``colormap`` on the display ``scale`` of :func:`engine.colormaps.display_range` (robust
    by default), computed from that result's evidence; the range is printed under the bar."""
    now = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    parts = [
        page_head(f"FGVis review: {image_name}"),
        f"<h1>FGVis review: {escape(image_name)}</h1>",
        f"<p>FGVis Studio {escape(app_version)} &middot; {now} &middot; {len(records)} result(s)</p>",
    ]
    if photo is not None:
        parts.append(f"<p>{_img(_fit(photo, 360), 'the photo')}</p>")
    if image_notes.strip():
        parts.append(f"<h3>Reviewer notes on this image</h3><p>{multiline(image_notes)}</p>")
    for number, record in enumerate(records, 1):
        parts.append(_result_section(number, record, colormap, scale))
    parts.append("</body></html>")
    return "\n".join(parts)


def index_report(rows: Sequence[dict], title: str = "FGVis batch results") -> str:
    """A table of many results (batch runs): ``rows`` are export summaries (JSON dicts) with an optional
    ``thumbnail`` (uint8 RGB array) each, and rows with ``"status": "failed"`` or ``"ignored"`` (``image``,
    ``reason``, and ``target``/``target_label``/``game`` when known) for what could not be explained or was
    not an image, listed as such and not counted as results."""
    head = (
        "<tr><th>image</th><th>class</th><th>game</th><th>p(x)</th><th>p(e)</th><th>re-scored</th><th>p(r) alone</th>"
        "<th>mask mean</th><th>steps</th><th>status</th><th>evidence</th></tr>"
    )
    body = []
    failed = [row for row in rows if row.get("status") == "failed"]
    ignored = [row for row in rows if row.get("status") == "ignored"]
    for row in rows:
        if row.get("status") in ("failed", "ignored"):
            label = escape(row.get("target_label") or "")
            target = f"{label} ({row['target']})" if row.get("target") is not None else "-"
            body.append(
                f"<tr><td>{escape(row['image'])}</td><td>{target}</td><td>{escape(row.get('game') or '-')}</td>"
                f"<td>-</td><td>-</td><td>-</td><td>-</td><td>-</td><td>-</td>"
                f"<td><b>{row['status']}</b>: {escape(row.get('reason') or 'no reason given')}</td><td></td></tr>"
            )
            continue
        status = "cancelled" if row.get("cancelled") else ("goal met" if row.get("goal_met") else "goal not met")
        if row.get("survives_8bit") is False:
            status += ", fails the 8-bit check"
        thumb = _img(row["thumbnail"], "evidence", 96) if row.get("thumbnail") is not None else ""
        body.append(
            f"<tr><td>{escape(row['image'])}</td><td>{escape(row['target_label'])} ({row['target']})</td>"
            f"<td>{escape(row['game'])}</td><td>{row['prob_original']:.3f}</td><td>{row['prob_explanation']:.3f}</td>"
            f"<td>{_num(row.get('prob_rescored'))}</td><td>{_num(row.get('prob_reference'))}</td>"
            f"<td>{row['mask_mean']:.3f}</td><td>{row['steps']}</td>"
            f"<td>{status}</td><td>{thumb}</td></tr>"
        )
    count = f"{len(rows) - len(failed) - len(ignored)} result(s)" + (f", {len(failed)} failed" if failed else "")
    count += f", {len(ignored)} file(s) not images" if ignored else ""
    return "\n".join(
        [
            page_head(title),
            f"<h1>{escape(title)}</h1>",
            f"<p>{count}</p>",
            f"<table border='1' cellspacing='0' cellpadding='3'>{head}{''.join(body)}</table>",
            "</body></html>",
        ]
    )


def _result_section(number: int, record: ExplanationRecord, colormap: str, scale: str) -> str:
    evidence_name = "m (kept)" if record.game == "preserve" else "1 - m (deleted)"
    shown = display_range(record.evidence, scale)
    overlay = compose_overlay(record.input_rgb, record.evidence, colormap, shown)
    pictures = (
        "<table cellspacing='6'><tr>"
        f"<td align='center'>{_img(record.input_rgb, 'model input')}<br>model input x</td>"
        f"<td align='center'>{_img(record.explanation_rgb, 'explanation')}<br>explanation e</td>"
        f"<td align='center'>{_img(overlay, 'evidence overlay')}<br>evidence {evidence_name}<br>"
        f"{_img(colour_bar(colormap, shown), 'colour bar', PICTURE_SIZE)}<br>"
        f"<small>colour scale {escape(shown.text())}</small></td>"
        "</tr></table>"
    )
    config = record.config
    blocked_last, blocked_max = monitor_summary(record.history.get("blocked_fraction", np.zeros(0)))
    facts = [
        ("model", record.model_name),
        ("weights SHA-256", record.weights_sha256 or "-"),
        ("class", f"{record.target} {record.target_label}"),
        ("p(target) on the photo x", f"{record.prob_original:.4f}"),
        ("p(target) on the explanation e", f"{record.prob_explanation:.4f}"),
        ("p(target) on the exported PNG, re-scored", _num(record.prob_rescored, 4)),
        ("p(target) on the reference alone (every pixel removed)", _num(record.prob_reference, 4)),
        ("top-1 on e", record.top1_explanation_label),
        ("game", record.game),
        ("defense", "on" if record.defense else "off"),
        ("lambda", f"{record.lambda_policy}, {record.lambda_:.4g}"),
        ("steps", f"{record.steps} of {config.steps}" + (" (cancelled: partial result)" if record.cancelled else "")),
        ("goal", record.status),
        ("8-bit check", "passed" if record.survives_8bit else "FAILED: the saved picture does not score like e"),
        ("mask mean", f"{record.mask_mean:.4f}"),
        ("evidence colour scale", shown.text()),
        ("optimiser", f"{config.optimizer}, lr {config.learning_rate(record.game)}"),
        ("reference", config.reference_text()),
        ("seed", str(config.seed)),
        ("device", record.device),
        ("time", f"{record.wall_time_s:.1f} s"),
        (
            "adversarial-evidence monitor",
            f"units blocked: last counted step {blocked_last:.3f}, max {blocked_max:.3f}",
        ),
    ]
    facts.extend(("warning", warning) for warning in record.warnings)
    if record.game == "preserve":
        facts.append(("score inflation p(e) - p(x)", f"{record.prob_explanation - record.prob_original:+.4f}"))
    fact_rows = "".join(f"<tr><td><b>{escape(k)}</b></td><td>{escape(v)}</td></tr>" for k, v in facts)
    tops = _top5_table(record)
    plot = _img(curve_plot(record.history), "curve", 360) if record.history else ""
    notes = f"<h3>Reviewer notes</h3><p>{multiline(record.notes)}</p>" if record.notes.strip() else ""
    # Each result starts a page: its pictures and tables are never split across two (PDF; browsers too).
    return (
        f"<h2 style='page-break-before: always'>{number}. {escape(record.target_label)} &middot; {record.game} "
        f"&middot; defense {'on' if record.defense else 'off'}</h2>{pictures}"
        f"<table cellspacing='8'><tr><td valign='top'><table border='1' cellspacing='0' cellpadding='3'>"
        f"{fact_rows}</table></td><td valign='top'>{tops}<br>{plot}<br>"
        "<small>target probability (orange) and mask mean (blue) per step</small></td></tr></table>"
        f"{notes}"
    )


def _top5_table(record: ExplanationRecord) -> str:
    rows = []
    for rank in range(max(len(record.top5_original), len(record.top5_explanation))):
        cells = []
        for ranking in (record.top5_original, record.top5_explanation):
            if rank < len(ranking):
                index, label, prob = ranking[rank]
                cells.append(f"<td>{escape(label)} ({index})</td><td>{prob:.3f}</td>")
            else:
                cells.append("<td></td><td></td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        "<table border='1' cellspacing='0' cellpadding='3'><tr><th colspan='2'>top-5 on x</th>"
        f"<th colspan='2'>top-5 on e</th></tr>{''.join(rows)}</table>"
    )


def curve_plot(history: dict, size: tuple[int, int] = (360, 160)) -> np.ndarray:
    """Target probability and mask mean per step on a 0..1 axis, as ``(h, w, 3)`` uint8."""
    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 30, 8, width - 8, height - 20
    draw.rectangle([left, top, right, bottom], outline=(160, 160, 160))
    for value in (0.0, 0.5, 1.0):
        y = bottom - value * (bottom - top)
        draw.line([left, y, right, y], fill=(225, 225, 225))
        draw.text((2, y - 6), f"{value:.1f}", fill=(80, 80, 80))
    steps = max(len(next(iter(history.values()), [])), 1)
    draw.text((left, bottom + 4), "step 1", fill=(80, 80, 80))
    draw.text((right - 50, bottom + 4), f"step {steps}", fill=(80, 80, 80))
    for key, colour in (("mask_mean", (31, 119, 180)), ("target_prob", (255, 127, 14))):
        values = np.asarray(history.get(key, []), dtype=np.float64)
        if values.size == 0:
            continue
        xs = left + np.arange(values.size) / max(values.size - 1, 1) * (right - left)
        ys = bottom - np.clip(values, 0, 1) * (bottom - top)
        draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=colour, width=2)
    return np.asarray(image)


def colour_bar(colormap: str, shown: DisplayRange, size: tuple[int, int] = (PICTURE_SIZE, 30)) -> np.ndarray:
    """The colormap from ``shown.low`` (left) to ``shown.high`` (right) with the end values and the scale
    written under it, as ``(h, w, 3)`` uint8."""
    width = size[0]
    table = lookup_table(colormap)
    bar = table[np.linspace(0, 255, width).round().astype(int)][None].repeat(14, axis=0)
    image = Image.new("RGB", size, "white")
    image.paste(Image.fromarray(bar), (0, 0))
    draw = ImageDraw.Draw(image)
    high = format_value(shown.high)
    draw.text((0, 16), format_value(shown.low), fill=(0, 0, 0))
    draw.text((width - draw.textlength(high), 16), high, fill=(0, 0, 0))
    middle = shown.scale
    draw.text(((width - draw.textlength(middle)) / 2, 16), middle, fill=(0, 0, 0))
    return np.asarray(image)


def png_data_uri(pixels: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(pixels)).decode("ascii")


def _img(pixels: np.ndarray, alt: str, width: int = PICTURE_SIZE) -> str:
    return f"<img src='{png_data_uri(pixels)}' width='{width}' alt='{escape(alt)}'>"


def _fit(pixels: np.ndarray, longest: int) -> np.ndarray:
    image = Image.fromarray(pixels)
    image.thumbnail((longest, longest))
    return np.asarray(image)


def page_head(title: str) -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title></head>"
        "<body style='font-family: sans-serif; font-size: 10pt'>"
    )


def _num(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def escape(text) -> str:
    return html.escape(str(text))


def multiline(text: str) -> str:
    return escape(text).replace("\n", "<br>")
