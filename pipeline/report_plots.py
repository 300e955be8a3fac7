"""Matplotlib figures of the audit report, returned as inline PNG data URIs."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from matplotlib.ticker import MaxNLocator

from manifests.report import ShardReport
from pipeline.report_data import Histogram, ShardTiming

_DPI = 96
_KEPT, _DROPPED, _MARK = "#3b7dd8", "#d8643b", "#222222"


@contextmanager
def figure(width: float, height: float) -> Iterator[tuple[Any, list[str]]]:
    """A figure on the Agg backend (no display needed); the PNG URI lands in the list."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    out: list[str] = []
    yield fig, out
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    out.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))


def funnel_plot(funnel: list[ShardReport]) -> str:
    """Kept and dropped per stage, as horizontal stacked bars."""
    with figure(7.5, 0.5 + 0.45 * len(funnel)) as (fig, out):
        ax = fig.subplots()
        names = [r.stage for r in funnel][::-1]
        kept = [r.n_out for r in funnel][::-1]
        dropped = [r.n_dropped for r in funnel][::-1]
        ax.barh(names, kept, color=_KEPT, label="kept")
        ax.barh(names, dropped, left=kept, color=_DROPPED, label="dropped here")
        for y, (k, d) in enumerate(zip(kept, dropped, strict=True)):
            ax.text(k + d, y, f" {k} / {k + d}", va="center", fontsize=8)
        ax.set_xlabel("samples")
        ax.legend(loc="lower right", fontsize=8)
        ax.margins(x=0.15)
    return out[0]


def histogram_plot(hist: Histogram) -> str:
    """One score's histogram with its thresholds as dashed lines (|x| thresholds at +-)."""
    with figure(3.6, 2.4) as (fig, out):
        ax = fig.subplots()
        if hist.counts:
            widths = [b - a for a, b in zip(hist.edges[:-1], hist.edges[1:], strict=True)]
            ax.bar(hist.edges[:-1], hist.counts, width=widths, align="edge", color=_KEPT)
        for mark in hist.thresholds:
            xs = [mark.value, -mark.value] if mark.kind == "abs_max" else [mark.value]
            for i, x in enumerate(xs):
                label = f"{mark.kind} {mark.value:g}" if i == 0 else None
                ax.axvline(x, color=_MARK, linestyle="--", linewidth=1.2, label=label)
        if hist.thresholds:
            ax.legend(fontsize=7, loc="best")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{hist.column} (n={hist.count})", fontsize=9)
        ax.tick_params(labelsize=7)
    return out[0]


def timing_plot(timings: list[ShardTiming], stages: list[str]) -> str:
    """Seconds per shard for each stage (one dot per shard)."""
    with figure(7.5, 0.6 + 0.4 * max(len(stages), 1)) as (fig, out):
        ax = fig.subplots()
        for y, stage in enumerate(stages[::-1]):
            xs = [t.seconds for t in timings if t.stage == stage]
            ax.scatter(xs, [y] * len(xs), color=_KEPT, s=18)
        ax.set_yticks(range(len(stages)), stages[::-1])
        ax.set_xlabel("seconds per shard")
    return out[0]
