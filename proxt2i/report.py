"""Evaluator outputs: image grids (PNG), metric plots and the metrics table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# (row key, header, format) of the table's columns, in order; absent keys are left out.
TABLE_COLUMNS = (
    ("sampler", "sampler", "{}"),
    ("steps", "steps", "{}"),
    ("guidance", "w", "{:g}"),
    ("nfe", "nfe", "{}"),
    ("n_images", "images", "{}"),
    ("fid", "fid", "{:.2f}"),
    ("kid_mean", "kid", "{:.4f}"),
    ("kid_std", "kid_std", "{:.4f}"),
    ("clip_score", "clip", "{:.2f}"),
    ("face_detected", "faces", "{:.2f}"),
    ("face_quality", "sharpness", "{:.1f}"),
    ("aesthetic", "aesthetic", "{:.3f}"),
    ("seconds", "seconds", "{:.1f}"),
)


def format_table(rows: list[dict[str, Any]]) -> str:
    """One aligned text line per (sampler, steps, guidance) row; a missing metric prints '-'."""
    columns = [c for c in TABLE_COLUMNS if any(c[0] in r for r in rows)]
    cells = [[header for _, header, _ in columns]]
    for row in rows:
        cells.append(
            ["-" if row.get(key) is None else fmt.format(row[key]) for key, _, fmt in columns]
        )
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in cells
    )


def save_grid(images: np.ndarray, path: Path, columns: int = 8) -> Path:
    """Tile uint8 (B, H, W, 3) images row by row into one PNG."""
    b, h, w, _ = images.shape
    cols = min(columns, b)
    rows = math.ceil(b / cols)
    grid = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = im
    Image.fromarray(grid).save(path)
    return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series_label(row: dict[str, Any], sweep: bool) -> str:
    return f"{row['sampler']} w={row['guidance']:g}" if sweep else str(row["sampler"])


def plot_metrics(rows: list[dict[str, Any]], metrics: list[str], path: Path) -> Path:
    """One panel per metric, one line per sampler (and guidance weight), NFE on a log x-axis."""
    plt = _pyplot()
    sweep = len({r.get("guidance", 1.0) for r in rows}) > 1
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for label in sorted({_series_label(r, sweep) for r in rows}):
            pts = sorted(
                (r["nfe"], r[metric])
                for r in rows
                if _series_label(r, sweep) == label and r.get(metric) is not None
            )
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("network calls per image (NFE)")
        ax.set_title(metric)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_guidance_sweep(rows: list[dict[str, Any]], path: Path) -> Path:
    """FID against CLIP score, one line per (sampler, steps), a point per guidance weight."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    for sampler, steps in sorted({(r["sampler"], r["steps"]) for r in rows}):
        pts = sorted(
            (r["guidance"], r["clip_score"], r["fid"])
            for r in rows
            if (r["sampler"], r["steps"]) == (sampler, steps) and r.get("fid") is not None
        )
        if not pts:
            continue
        ax.plot([p[1] for p in pts], [p[2] for p in pts], marker="o", label=f"{sampler} N={steps}")
        for w, clip, fid in pts:
            ax.annotate(f"w={w:g}", (clip, fid), fontsize=6)
    ax.set_xlabel("CLIP score")
    ax.set_ylabel("FID")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
