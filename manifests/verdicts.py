"""Combine a stage's own rejections with the verdict it received, and count them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from manifests import schema as S
from manifests.report import ShardReport


@dataclass(frozen=True)
class Verdicts:
    """Per-row verdict after a stage: ``keep`` and the first reject reason (None if kept)."""

    keep: np.ndarray
    reasons: list[str | None]

    def columns(self) -> dict[str, pa.Array]:
        return {
            S.KEEP: pa.array(self.keep, pa.bool_()),
            S.REJECT_REASON: pa.array(self.reasons, pa.string()),
        }


def combine(
    upstream_keep: np.ndarray,
    upstream_reasons: Sequence[str | None],
    stage_reasons: Sequence[str | None],
) -> Verdicts:
    """Rows kept upstream are rejected here iff this stage gave them a reason.

    A row rejected upstream keeps its upstream reason: the first reason is the one that counts,
    and this stage's reason for such a row (if any) is ignored.
    """
    keep = np.asarray(upstream_keep, dtype=bool).copy()
    reasons = list(upstream_reasons)
    for i, why in enumerate(stage_reasons):
        if keep[i] and why is not None:
            keep[i] = False
            reasons[i] = why
    return Verdicts(keep=keep, reasons=reasons)


def count(
    stage: str,
    shard: int,
    upstream_keep: np.ndarray,
    after: Verdicts,
    seconds: dict[str, float] | None = None,
    counters: dict[str, float] | None = None,
) -> ShardReport:
    """The shard report of a stage that turned ``upstream_keep`` into ``after``."""
    upstream_keep = np.asarray(upstream_keep, dtype=bool)
    newly = upstream_keep & ~after.keep
    dropped = Counter(after.reasons[i] for i in np.flatnonzero(newly))
    return ShardReport(
        stage=stage,
        shards=(shard,),
        n_rows=len(after.reasons),
        n_in=int(upstream_keep.sum()),
        n_out=int(after.keep.sum()),
        dropped={str(k): v for k, v in sorted(dropped.items(), key=lambda kv: str(kv[0]))},
        seconds=seconds or {},
        counters=counters or {},
    )
