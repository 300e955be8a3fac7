"""Column values as NumPy arrays for vectorized ``decide`` (lists, NumPy or Arrow in).

Nulls become NaN (numbers) or None (objects), so one ``decide`` serves freshly scored lists
and manifests read back from Parquet by ``refilter``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_NONE = np.array([None], dtype=object)

# A column as a list, a NumPy array or an Arrow array (what decide accepts).
ColumnLike: TypeAlias = Sequence[Any] | np.ndarray | pa.Array | pa.ChunkedArray
Columns: TypeAlias = Mapping[str, ColumnLike]


def row_count(columns: Columns, names: Sequence[str]) -> int:
    """Rows in the first of ``names`` present in ``columns`` (0 when none is)."""
    for name in names:
        if name in columns:
            return len(columns[name])
    return 0


def floats(columns: Columns, name: str, rows: int) -> np.ndarray:
    """A numeric column as float64 with NaN for null; all NaN when the column is absent."""
    values = columns.get(name)
    if values is None:
        return np.full(rows, np.nan)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return np.asarray(values.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=float)
    return np.array(values, dtype=float)


def objects(columns: Columns, name: str, rows: int) -> np.ndarray:
    """Any column as an object array (None for null); all None when absent."""
    values = columns.get(name)
    if values is None:
        return np.full(rows, None, dtype=object)
    if isinstance(values, pa.ChunkedArray | pa.Array):
        values = values.to_pylist()
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def list_floats(
    columns: Columns, name: str, rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A list<number> column flattened: ``(values, parent row of each value, row is null)``."""
    raw = columns.get(name)
    if raw is None:
        return np.zeros(0), np.zeros(0, dtype=np.int64), np.ones(rows, dtype=bool)
    array = raw if isinstance(raw, pa.Array | pa.ChunkedArray) else pa.array(list(raw))
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_null(array.type):
        return np.zeros(0), np.zeros(0, dtype=np.int64), np.ones(rows, dtype=bool)
    flat = array.flatten().cast(pa.float64()).to_numpy(zero_copy_only=False)
    parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False)
    null = array.is_null().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=float), np.asarray(parents, dtype=np.int64), null


def verdict(rows: int, checks: Sequence[tuple[np.ndarray, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Keep mask and reasons from ``(fails, reason)`` checks; the first failing check wins."""
    reasons = np.full(rows, None, dtype=object)
    for fails, reason in reversed(checks):
        reasons[np.asarray(fails, dtype=bool)] = reason
    return is_none(reasons), reasons


def is_none(values: np.ndarray) -> np.ndarray:
    """Bool mask of the None entries of an object array (vectorized)."""
    return np.asarray(np.equal(values, _NONE), dtype=bool)
