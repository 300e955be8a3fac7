"""``laionface report RUN_DIR``: a self-contained HTML audit report, and its numbers as JSON.

Plots and thumbnails are inline (base64), so the one file can be mailed or archived. Sections:
the funnel, a histogram of every score with its thresholds, galleries of kept samples and of
samples rejected for each reason, the hand-focused subset (counts, hand sizes, tagged samples),
per-shard timing and throughput, caption lengths.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

from manifests import schema as S
from manifests.io import write_text_atomic
from manifests.layout import RunLayout
from pipeline.report_data import ReportData, ShardTiming, as_json, collect
from pipeline.report_gallery import HANDS_TAGGED, KEPT, Tile, galleries
from pipeline.report_plots import funnel_plot, histogram_plot, timing_plot
from pipeline.status import RunDirError

_CSS = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1240px; }
h1 { font-size: 22px; } h2 { font-size: 18px; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; }
.tile { width: 140px; font-size: 10px; overflow-wrap: anywhere; }
.tile img, .noimg { width: 128px; height: 128px; object-fit: contain; background: #eee; }
.noimg { display: flex; align-items: center; justify-content: center; color: #888; }
.muted { color: #777; font-size: 12px; }
.group { display: inline-block; vertical-align: top; margin: 0 24px 8px 0; }
"""


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    json: Path


def _funnel_html(data: ReportData) -> str:
    rows = "".join(
        f"<tr><td>{escape(r.stage)}</td><td>{r.n_in}</td><td>{r.n_out}</td>"
        f"<td>{r.n_dropped}</td></tr>"
        for r in data.funnel
    )
    reasons = "".join(
        f"<tr><td>{escape(why)}</td><td>{n}</td></tr>"
        for r in data.funnel
        for why, n in sorted(r.dropped.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return (
        f'<img src="{funnel_plot(data.funnel)}" alt="funnel">'
        "<table><tr><th>stage</th><th>in</th><th>kept</th><th>dropped</th></tr>"
        f"{rows}</table><table><tr><th>reject reason</th><th>samples</th></tr>{reasons}</table>"
    )


def _scores_html(data: ReportData) -> str:
    if not data.histograms:
        return '<p class="muted">no score columns in the manifests</p>'
    shown = [h for h in data.histograms if h.count > 0]
    images = "".join(f'<img src="{histogram_plot(h)}" alt="{escape(h.column)}">' for h in shown)
    empty = ", ".join(h.column for h in data.histograms if h.count == 0)
    note = "every manifest row with a value (kept or not); dashed: thresholds from run.json"
    if empty:
        note += f"; no values: {escape(empty)}"
    return f'<p class="muted">{note}</p><div class="grid">{images}</div>'


def _tile_html(tile: Tile) -> str:
    picture = (
        f'<img src="{tile.thumbnail}" alt="">'
        if tile.thumbnail
        else '<div class="noimg">no image</div>'
    )
    return (
        f'<div class="tile">{picture}<br><code>{escape(tile.sample_id)}</code><br>'
        f"{escape(tile.text[:120])}</div>"
    )


def _galleries_html(tiles: dict[str, list[Tile]]) -> str:
    parts = []
    for group, items in tiles.items():
        if group == HANDS_TAGGED:
            continue  # drawn in the hands section
        title = "kept samples" if group == KEPT else f"rejected: {group}"
        body = "".join(_tile_html(t) for t in items) or '<p class="muted">none</p>'
        block = f"<h3>{escape(title)}</h3><div class='grid'>{body}</div>"
        parts.append(block if group == KEPT else f"<div class='group'>{block}</div>")
    return "".join(parts)


def _timing_html(data: ReportData) -> str:
    rows = []
    for stage in data.stages:
        mine: list[ShardTiming] = [t for t in data.timings if t.stage == stage]
        total = sum(t.seconds for t in mine)
        n_rows = sum(t.rows for t in mine)
        rate = n_rows / total if total > 0 else 0.0
        mean = total / len(mine) if mine else 0.0
        rows.append(
            f"<tr><td>{escape(stage)}</td><td>{len(mine)}</td><td>{total:.2f}</td>"
            f"<td>{mean:.2f}</td><td>{rate:.1f}</td></tr>"
        )
    return (
        f'<img src="{timing_plot(data.timings, data.stages)}" alt="timing">'
        "<table><tr><th>stage</th><th>shards</th><th>seconds</th><th>s / shard</th>"
        f"<th>rows / s</th></tr>{''.join(rows)}</table>"
    )


def _captions_html(data: ReportData) -> str:
    hist = data.caption_words
    if hist is None:
        return '<p class="muted">no published captions</p>'
    return (
        f'<img src="{histogram_plot(hist)}" alt="caption words">'
        f"<p>{hist.count} published captions, {hist.mean:.1f} words on average</p>"
    )


def hands_section(data: ReportData, tiles: dict[str, list[Tile]]) -> str:
    """The hand-focused subset: counts, every hand's size, tiles of tagged samples."""
    hands = data.hands
    if hands is None:
        return '<p class="muted">no hands filter in this run</p>'
    share = 100 * hands.published_tagged / hands.published if hands.published else 0.0
    plot = (
        f'<img src="{histogram_plot(hands.sizes)}" alt="hand sizes">' if hands.sizes.count else ""
    )
    body = "".join(_tile_html(t) for t in tiles.get(HANDS_TAGGED, []))
    return (
        f"<p>{hands.hands} hands in {hands.images_with_hands} of {hands.images_scored} scored "
        f"images; {hands.published_tagged} of {hands.published} published samples "
        f"({share:.1f}%) tagged <code>{S.HANDS_SUBSET}</code></p>{plot}"
        f"<h3>tagged samples</h3><div class='grid'>{body or '<p class=muted>none</p>'}</div>"
    )


def render(data: ReportData, tiles: dict[str, list[Tile]]) -> str:
    """The whole HTML page."""
    sections = [
        ("Funnel", _funnel_html(data)),
        ("Scores and thresholds", _scores_html(data)),
        ("Galleries", _galleries_html(tiles)),
        ("Hand-focused subset", hands_section(data, tiles)),
        ("Timing and throughput", _timing_html(data)),
        ("Caption length", _captions_html(data)),
    ]
    body = "".join(f"<h2>{escape(title)}</h2>{html}" for title, html in sections)
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>laionface audit report</title><style>{_CSS}</style></head><body>"
        f"<h1>Audit report</h1><p class='muted'>{escape(data.run_dir)}; stages: "
        f"{escape(', '.join(data.stages))}; config fingerprint "
        f"<code>{escape(str(data.config_fingerprint))}</code> (run {escape(str(data.run_id))})"
        f"</p>{body}</body></html>"
    )


def write_report(run_dir: Path, out: Path | None = None) -> ReportFiles:
    """Write the HTML report (default ``RUN/audit.html``) and its JSON beside it."""
    layout = RunLayout(Path(run_dir))
    data = collect(layout)
    if not data.stages:
        raise RunDirError(f"{run_dir}: no stage has a done shard")
    reasons = [why for r in data.funnel for why in sorted(r.dropped)]
    tags = (HANDS_TAGGED,) if data.hands is not None else ()
    tiles = galleries(layout, data.stages, reasons, tags=tags)
    html_path = Path(out) if out is not None else layout.root / "audit.html"
    json_path = html_path.with_suffix(".json")
    write_text_atomic(render(data, tiles), html_path)
    ids = {group: [t.sample_id for t in items] for group, items in tiles.items()}
    write_text_atomic(as_json(data, ids), json_path)
    return ReportFiles(html_path, json_path)
