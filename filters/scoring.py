"""Run filters over a batch (``score_batch``) and turn scores into verdicts (``decide_all``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from filters.arrays import Columns
from filters.batch import Batch
from filters.protocol import Filter
from manifests import schema as S


@dataclass(frozen=True)
class Verdicts:
    """Per-row decisions of a filter chain.

    ``keep`` is the AND of every filter's mask; ``reject_reason`` the reason of the first filter
    (in chain order) that rejects, None where kept; ``per_filter`` maps each ``<filter>_keep``
    column to that filter's own mask.
    """

    keep: np.ndarray
    reject_reason: np.ndarray
    per_filter: dict[str, np.ndarray]

    def columns(self) -> dict[str, list[Any]]:
        """Manifest columns: ``keep``, ``reject_reason`` and every ``<filter>_keep``."""
        out: dict[str, list[Any]] = {name: mask.tolist() for name, mask in self.per_filter.items()}
        out[S.KEEP] = self.keep.tolist()
        out[S.REJECT_REASON] = self.reject_reason.tolist()
        return out

    def counts(self) -> dict[str, int]:
        """Rows per reject reason (the funnel), plus kept rows under ``keep``."""
        reasons, counts = np.unique(self.reject_reason[~self.keep].astype(str), return_counts=True)
        funnel = {str(r): int(c) for r, c in zip(reasons, counts, strict=True)}
        funnel[S.KEEP] = int(self.keep.sum())
        return funnel


def check_chain(filters: Sequence[Filter], inputs: Sequence[str] = ()) -> None:
    """Raise ``ValueError`` when a filter reads a column that neither ``inputs`` nor an earlier
    filter provides, or when two filters share a name."""
    available = set(inputs)
    seen: set[str] = set()
    for flt in filters:
        if flt.name in seen:
            raise ValueError(f"filter {flt.name!r} configured twice")
        seen.add(flt.name)
        missing = [c for c in flt.reads if c not in available]
        if missing:
            raise ValueError(
                f"filter {flt.name!r} reads {missing}, which no earlier filter writes: "
                "configure the filter that writes them first"
            )
        available.update(flt.writes)


def score_batch(
    filters: Sequence[Filter], batch: Batch, score_rejected: bool = False
) -> dict[str, list[Any]]:
    """Score ``batch`` with each filter in order; returns every written column.

    With ``score_rejected`` false, a filter scores only rows that every earlier filter kept;
    the other rows get ``None`` in its columns (and its ``decide`` then reports ``missing``).
    """
    check_chain(filters, tuple(batch.columns))
    rows = len(batch)
    alive = np.ones(rows, dtype=bool)
    scored: dict[str, list[Any]] = {}
    for flt in filters:
        current = batch.with_columns(scored)
        targets = np.arange(rows) if score_rejected else np.flatnonzero(alive)
        out = _score_rows(flt, current, targets.tolist())
        scored.update(out)
        keep, _ = flt.decide({**batch.columns, **scored})
        alive &= keep
    return scored


def _score_rows(flt: Filter, batch: Batch, rows: list[int]) -> dict[str, list[Any]]:
    """``flt.score`` on ``rows`` only, scattered back to full length with None elsewhere."""
    whole = len(rows) == len(batch)
    out = flt.score(batch if whole else batch.select(rows))
    if set(out) != set(flt.writes):
        raise ValueError(f"filter {flt.name!r} wrote {sorted(out)}, declared {flt.writes}")
    if whole:
        return {name: list(values) for name, values in out.items()}
    full: dict[str, list[Any]] = {}
    for name, values in out.items():
        column: list[Any] = [None] * len(batch)
        for row, value in zip(rows, values, strict=True):
            column[row] = value
        full[name] = column
    return full


def decide_all(filters: Sequence[Filter], columns: Columns) -> Verdicts:
    """Verdicts of the chain over stored columns; pure (no model, inputs untouched)."""
    names = [c for flt in filters for c in (*flt.reads, *flt.writes)]
    rows = next((len(columns[c]) for c in names if c in columns), 0)
    keep = np.ones(rows, dtype=bool)
    reasons = np.full(rows, None, dtype=object)
    per_filter: dict[str, np.ndarray] = {}
    for flt in filters:
        mask, why = flt.decide(columns)
        if mask.shape != (rows,):
            raise ValueError(
                f"filter {flt.name!r} decided {mask.shape[0]} rows, expected {rows}: "
                f"are its columns {[*flt.reads, *flt.writes]} stored?"
            )
        first = ~mask & keep
        reasons[first] = why[first]
        keep &= mask
        per_filter[flt.keep_column] = mask
    return Verdicts(keep, reasons, per_filter)
