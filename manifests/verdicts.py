"""The verdict a stage receives from upstream, combined with its own rejections, and counted.

Every stage but the first reads the manifests of the stages it declares (``Stage.reads``) with
``read_upstream``: their rows joined on sample_id and the verdict they arrive with (the last
stage read carries every earlier one, DESIGN.md §3). ``Upstream.combine`` then adds the stage's
own reasons and ``Upstream.count`` gives its shard report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from manifests import schema as S
from manifests.io import join_stages
from manifests.layout import RunLayout
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


@dataclass(frozen=True)
class Upstream:
    """The rows a stage reads and the verdict they arrive with (``keep``, first reason)."""

    rows: pa.Table
    keep: np.ndarray
    reasons: list[str | None]

    @classmethod
    def entering(cls, rows: pa.Table) -> Upstream:
        """Rows nothing judged yet (the first stage's input): every one enters."""
        return cls(rows, np.ones(rows.num_rows, dtype=bool), [None] * rows.num_rows)

    def combine(self, stage_reasons: Sequence[str | None]) -> Verdicts:
        """This stage's verdict: ``combine`` of the upstream verdict and its own reasons."""
        return combine(self.keep, self.reasons, stage_reasons)

    def count(
        self,
        stage: str,
        shard: int,
        after: Verdicts,
        seconds: dict[str, float] | None = None,
        counters: dict[str, float] | None = None,
    ) -> ShardReport:
        """The shard report of a stage that turned this verdict into ``after``."""
        return count(stage, shard, self.keep, after, seconds, counters)


def read_upstream(
    layout: RunLayout, stages: Sequence[str], shard: int, columns: Sequence[str] | None = None
) -> Upstream:
    """The manifests of ``stages`` (in pipeline order) for one shard, joined on sample_id, and
    the verdict of the last of them. With ``columns``, only those (plus sample_id and the
    verdict) are read. A null ``keep`` (a row the stage never judged) counts as dropped."""
    wanted = None if columns is None else list(dict.fromkeys([*columns, *S.VERDICT_COLUMNS]))
    rows = join_stages(layout, stages, shard, wanted)
    keep = pc.fill_null(rows[S.KEEP], False).to_numpy(zero_copy_only=False)
    return Upstream(rows, np.asarray(keep, dtype=bool), rows[S.REJECT_REASON].to_pylist())
