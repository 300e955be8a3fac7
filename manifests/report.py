"""Shard reports: what one (stage, shard) task did, kept in its done marker.

Reports merge by addition, so a stage's report is the sum of its shards' reports and the
run's funnel is read from the stage reports alone.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ShardReport:
    """Counts for one stage over one or more shards.

    ``n_rows`` counts every row of the manifest; ``n_in`` the rows that were still kept when
    they reached the stage; ``n_out`` those still kept after it; ``dropped`` maps each reason
    this stage emitted to its count. The invariant ``n_in == n_out + sum(dropped)`` holds for
    every stage (contract-tested).
    """

    stage: str
    shards: tuple[int, ...]
    n_rows: int
    n_in: int
    n_out: int
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    errors: tuple[str, ...] = ()

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def balanced(self) -> bool:
        """The report arithmetic every stage must satisfy."""
        return self.n_in == self.n_out + self.n_dropped

    def merge(self, other: ShardReport) -> ShardReport:
        """Add two reports of the same stage."""
        if other.stage != self.stage:
            raise ValueError(f"cannot merge reports of {self.stage!r} and {other.stage!r}")
        return ShardReport(
            stage=self.stage,
            shards=tuple(sorted((*self.shards, *other.shards))),
            n_rows=self.n_rows + other.n_rows,
            n_in=self.n_in + other.n_in,
            n_out=self.n_out + other.n_out,
            dropped=_add(self.dropped, other.dropped),
            seconds=_add(self.seconds, other.seconds),
            counters=_add(self.counters, other.counters),
            errors=self.errors + other.errors,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ShardReport:
        data: dict[str, Any] = json.loads(text)
        data["shards"] = tuple(data["shards"])
        data["errors"] = tuple(data["errors"])
        return cls(**data)

    @classmethod
    def empty(cls, stage: str) -> ShardReport:
        return cls(stage=stage, shards=(), n_rows=0, n_in=0, n_out=0)


def _add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    total: Counter[str] = Counter()
    for part in (a, b):
        for key, value in part.items():
            total[key] += value
    return dict(sorted(total.items()))


def merge_reports(stage: str, reports: list[ShardReport]) -> ShardReport:
    """Sum of ``reports`` (all of ``stage``); the empty report when there are none."""
    total = ShardReport.empty(stage)
    for report in reports:
        total = total.merge(report)
    return total
