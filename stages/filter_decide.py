"""Re-deciding a filter shard from its stored scores: when is that enough?

Under the cascade (``score_rejected: false`` or ``cheap``) a filter may skip rows an earlier
one rejected; the manifest lists them in ``not_scored``. New thresholds can be applied to the
stored scores exactly when no row now reaches a filter that never scored it
(``reaches_unscored``); otherwise the shard must be scored again. Manifests written before
``not_scored`` existed are judged from their per-filter masks (``needs_rescoring``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from filters import Filter
from filters.scoring import ChainVerdicts
from manifests import schema as S

_NOT_SCORED_SUFFIX = ":" + S.NOT_SCORED_WHY


def alive_before(per_filter: Sequence[np.ndarray], rows: int) -> list[np.ndarray]:
    """For each filter in chain order, the rows every earlier filter kept."""
    alive = np.ones(rows, dtype=bool)
    out = []
    for mask in per_filter:
        out.append(alive.copy())
        alive &= mask
    return out


def stored_masks(filters: Sequence[Filter], manifest: pa.Table) -> list[np.ndarray]:
    """The per-filter keep masks a filter manifest stores (null, i.e. never entered: False)."""
    return [
        np.asarray(manifest[f.keep_column].fill_null(False).to_numpy(zero_copy_only=False), bool)
        for f in filters
    ]


def needs_rescoring(
    filters: Sequence[Filter], old: Sequence[np.ndarray], new: ChainVerdicts, entered: np.ndarray
) -> bool:
    """True when some entering row reaches, under ``new`` verdicts, a filter that the stored
    run (whose per-filter masks are ``old``) did not let it reach, so it was never scored."""
    rows = len(entered)
    was = alive_before(old, rows)
    now = alive_before([new.per_filter[f.keep_column] for f in filters], rows)
    return any(bool(np.any(n & ~w & entered)) for n, w in zip(now, was, strict=True))


def reaches_unscored(verdict: ChainVerdicts, entered: np.ndarray) -> bool:
    """True when an entering row fails first at a filter that never scored it (its reason is
    ``"<filter>:not_scored"``, which ``decide_all`` gives from the ``not_scored`` column)."""
    return any(
        came and why is not None and str(why).endswith(_NOT_SCORED_SUFFIX)
        for came, why in zip(entered, verdict.reject_reason, strict=True)
    )
