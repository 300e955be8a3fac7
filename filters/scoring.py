"""Run filters over a batch (``score_batch``) and turn scores into verdicts (``decide_all``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from filters.arrays import Columns
from filters.batch import Batch
from filters.protocol import Filter
from manifests import schema as S


@dataclass(frozen=True)
class ChainVerdicts:
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


# ``score_rejected``: False (the cascade over every filter), "cheap" (the cascade over the
# filters that declare themselves expensive) or True (every filter scores every row).
ScoreRejected: TypeAlias = bool | Literal["cheap"]
CHEAP = "cheap"


def is_expensive(flt: Filter) -> bool:
    """Whether ``flt`` declares ``expensive = True`` (it runs a model: detectors, NSFW, CLIP).

    An optional declaration: a filter without it is cheap, so a filter opts into the cascade of
    ``score_rejected: cheap`` by declaring it, and nothing else changes.
    """
    return bool(getattr(flt, "expensive", False))


@dataclass(frozen=True)
class ScoredBatch:
    """What ``score_chain`` measured: every written column, per row the chain filters that
    skipped it (``NOT_SCORED``), the seconds each filter's ``score`` and all ``decide`` calls
    took (keys: the filter names and ``"decide"``), and how many rows each filter scored."""

    columns: dict[str, list[Any]]
    not_scored: list[list[str]]
    seconds: dict[str, float]
    scored_rows: dict[str, int]


def score_batch(
    filters: Sequence[Filter], batch: Batch, score_rejected: ScoreRejected = False
) -> dict[str, list[Any]]:
    """Score ``batch`` with each filter in order; returns every written column.

    With ``score_rejected`` false, a filter scores only rows that every earlier filter kept;
    the other rows get ``None`` in its columns (and its ``decide`` then reports ``missing``).
    """
    return score_chain(filters, batch, score_rejected).columns


def score_chain(
    filters: Sequence[Filter], batch: Batch, score_rejected: ScoreRejected = False
) -> ScoredBatch:
    """``score_batch`` plus which filter skipped which row, and where the time went.

    A filter skips a row (its columns get ``None``) when an earlier filter rejected it and the
    cascade applies to it: always under ``score_rejected: false``, only for expensive filters
    (``is_expensive``) under ``"cheap"``, never under ``true``.
    """
    check_chain(filters, tuple(batch.columns))
    rows = len(batch)
    alive = np.ones(rows, dtype=bool)
    scored: dict[str, list[Any]] = {}
    not_scored: list[list[str]] = [[] for _ in range(rows)]
    seconds: dict[str, float] = {"decide": 0.0}
    scored_rows: dict[str, int] = {}
    for flt in filters:
        current = batch.with_columns(scored)
        cascade = score_rejected is False or (score_rejected == CHEAP and is_expensive(flt))
        targets = np.flatnonzero(alive) if cascade else np.arange(rows)
        if cascade:
            for row in np.flatnonzero(~alive):
                not_scored[row].append(flt.name)
        t0 = time.perf_counter()
        scored.update(_score_rows(flt, current, targets.tolist()))
        t1 = time.perf_counter()
        keep, _ = flt.decide({**batch.columns, **scored})
        seconds[flt.name] = t1 - t0
        scored_rows[flt.name] = len(targets)
        seconds["decide"] += time.perf_counter() - t1
        alive &= keep
    return ScoredBatch(scored, not_scored, seconds, scored_rows)


def _score_rows(flt: Filter, batch: Batch, rows: list[int]) -> dict[str, list[Any]]:
    """``flt.score`` on ``rows`` only, scattered back to full length with None elsewhere."""
    whole = len(rows) == len(batch)
    if not rows and not whole:
        return {name: [None] * len(batch) for name in flt.writes}
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


def decide_all(filters: Sequence[Filter], columns: Columns) -> ChainVerdicts:
    """The verdicts of the chain over stored columns; pure (no model, inputs untouched).

    With a ``NOT_SCORED`` column, a row that a filter never scored fails that filter with
    ``"<filter>:not_scored"`` (whatever its ``decide`` says of the null scores): so new
    thresholds never keep a row on scores that were not computed, and the reason says that
    scoring again, not the sample, is what is missing.
    """
    names = [c for flt in filters for c in (*flt.reads, *flt.writes)]
    rows = next((len(columns[c]) for c in names if c in columns), 0)
    skipped = _skipped(columns, rows)
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
        unscored = skipped.get(flt.name)
        if unscored is not None:
            mask, why = mask & ~unscored, why.copy()
            why[unscored] = S.reason(flt.name, S.NOT_SCORED_WHY)
        first = ~mask & keep
        reasons[first] = why[first]
        keep &= mask
        per_filter[flt.keep_column] = mask
    return ChainVerdicts(keep, reasons, per_filter)


def _skipped(columns: Columns, rows: int) -> dict[str, np.ndarray]:
    """Per filter name, the rows ``NOT_SCORED`` says it skipped (empty without the column)."""
    values = columns.get(S.NOT_SCORED)
    if values is None or rows == 0:
        return {}
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(list(values), S.COLUMNS[S.NOT_SCORED].dtype)
    flat = np.asarray(pc.list_flatten(values).to_numpy(zero_copy_only=False), dtype=object)
    parents = np.asarray(pc.list_parent_indices(values).to_numpy(), dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    for name in np.unique(flat.astype(str)) if len(flat) else ():
        mask = np.zeros(rows, dtype=bool)
        mask[parents[flat == name]] = True
        out[str(name)] = mask
    return out
