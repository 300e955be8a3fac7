"""Evaluator outputs: image grids (PNG) and metric-vs-steps plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


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


def plot_metrics(rows: list[dict[str, Any]], metrics: list[str], path: Path) -> Path:
    """One panel per metric, one line per sampler, steps on a log x-axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for sampler in sorted({r["sampler"] for r in rows}):
            pts = sorted((r["steps"], r[metric]) for r in rows if r["sampler"] == sampler)
            pts = [(s, v) for s, v in pts if v is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=sampler)
        ax.set_xscale("log")
        ax.set_xlabel("steps (network calls)")
        ax.set_title(metric)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
