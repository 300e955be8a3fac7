"""Tags: boolean columns a filter decides from its stored scores without dropping anything.

A subset (e.g. the hand-focused one) is a tag on published samples, never a second copy
(DESIGN.md §3). A filter that tags declares ``tag_columns`` and a pure
``tag(columns) -> {column: bool mask}``; like ``decide`` it reads only stored columns, so the
filter stage and ``refilter`` re-decide tags from the manifests alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from filters.arrays import Columns
from filters.protocol import Filter


@runtime_checkable
class Tagger(Protocol):
    """The optional part of a ``Filter`` that tags rows."""

    @property
    def tag_columns(self) -> tuple[str, ...]:
        """The bool columns ``tag`` returns (registered in ``manifests.schema``)."""
        ...

    def tag(self, columns: Columns) -> dict[str, np.ndarray]:
        """A bool mask per tag column, one entry per row."""
        ...


def tag_columns(filters: Sequence[Filter]) -> tuple[str, ...]:
    """Every tag column of a chain, in chain order."""
    return tuple(c for f in filters if isinstance(f, Tagger) for c in f.tag_columns)


def decide_tags(filters: Sequence[Filter], columns: Columns) -> dict[str, np.ndarray]:
    """Every tag of a chain over stored columns; pure (no model, inputs untouched)."""
    out: dict[str, np.ndarray] = {}
    for flt in filters:
        if isinstance(flt, Tagger):
            tags = flt.tag(columns)
            if set(tags) != set(flt.tag_columns):
                raise ValueError(
                    f"filter {flt.name!r} tagged {sorted(tags)}, declared {flt.tag_columns}"
                )
            out.update({name: np.asarray(mask, dtype=bool) for name, mask in tags.items()})
    return out
