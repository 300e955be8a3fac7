"""The ``Filter`` protocol: score (may run models) then decide (pure, vectorized)."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from filters.arrays import Columns
from filters.batch import Batch


class Filter(Protocol):
    """One quality criterion.

    ``score`` measures (models allowed) and returns raw columns, one list per written column,
    each as long as the batch; rows it cannot measure get ``None``. ``decide`` turns stored
    columns into a verdict without models, so thresholds can be re-tuned from manifests alone.
    ``decide`` reads only columns in ``reads`` and ``writes``.
    """

    @property
    def name(self) -> str:
        """Registry key; also the prefix of every reason (``"<name>:<why>"``)."""
        ...

    @property
    def reads(self) -> tuple[str, ...]:
        """Columns ``score`` needs from the batch (input or written by earlier filters)."""
        ...

    @property
    def writes(self) -> tuple[str, ...]:
        """Columns ``score`` returns."""
        ...

    @property
    def reasons(self) -> tuple[str, ...]:
        """Every reason ``decide`` may emit, spelled ``manifests.schema.reason(name, why)``."""
        ...

    @property
    def keep_column(self) -> str:
        """The ``<name>_keep`` column holding this filter's verdict."""
        ...

    def score(self, batch: Batch) -> dict[str, list[Any]]:
        """Raw scores for every row of ``batch``."""
        ...

    def decide(self, columns: Columns) -> tuple[np.ndarray, np.ndarray]:
        """``(keep, reasons)``: a bool mask and an object array (None where kept)."""
        ...


class FilterSettings(Protocol):
    """What every registered filter config offers: the static type of ``FilterConfig``.

    ``FILTERS`` maps each key to a pydantic model declaring ``type: Literal["<key>"]``; the
    union configs validate against is built from it at run time (``manifests.registry``), which
    mypy cannot see, so code that holds "some filter's config" is typed with this.
    """

    @property
    def type(self) -> str:
        """The registry key."""
        ...

    def build(self) -> Filter:
        """The configured filter."""
        ...
