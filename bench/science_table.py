"""Seed aggregation and the markdown table of the science bench.

Every measurement is one `Cell` value per seed; the table shows mean ± spread, where the spread
is the sample standard deviation over seeds (ddof = 1: with 3 seeds the population formula would
understate it by a factor sqrt(2/3)).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Measure:
    """One metric of one (experiment, method, steps) row, measured with one seed."""

    experiment: str
    method: str
    steps: int
    metric: str
    seed: int
    value: float


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation (nan for a single seed) over `n` seeds."""

    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        if math.isnan(self.mean):
            return "n/a"
        return f"{self.mean:.3g} ± {self.std:.2g}" if self.n > 1 else f"{self.mean:.3g}"


def spread(values: Sequence[float]) -> Spread:
    """Mean and sample std (ddof = 1); nan values (a grid a sampler refuses) give n/a."""
    if not values or any(math.isnan(v) for v in values):
        return Spread(math.nan, math.nan, len(values))
    mean = sum(values) / len(values)
    if len(values) == 1:
        return Spread(mean, math.nan, 1)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return Spread(mean, math.sqrt(var), len(values))


RowKey = tuple[str, str, int]


def aggregate(measures: Iterable[Measure]) -> dict[RowKey, dict[str, Spread]]:
    """(experiment, method, steps) -> metric -> spread over seeds, in first-seen order."""
    grouped: dict[RowKey, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for m in measures:
        grouped[(m.experiment, m.method, m.steps)][m.metric].append(m.value)
    return {key: {k: spread(v) for k, v in metrics.items()} for key, metrics in grouped.items()}


def markdown_table(measures: Iterable[Measure], metrics: Sequence[str]) -> str:
    """One row per (experiment, method, steps), one column per metric; blank where absent."""
    rows = aggregate(measures)
    head = ["experiment", "method", "steps", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (exp, method, steps), cells in rows.items():
        values = [str(cells[m]) if m in cells else "" for m in metrics]
        lines.append("| " + " | ".join([exp, method, str(steps or ""), *values]) + " |")
    return "\n".join(lines)
