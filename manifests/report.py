"""Shard reports: what one (stage, shard) task did, kept in its done marker.

Reports merge by addition, so a stage's report is the sum of its shards' reports and the
run's funnel is read from the stage reports alone.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
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


def _add(*parts: dict[str, Any]) -> dict[str, Any]:
    """Key-wise sum, keys sorted."""
    total: Counter[str] = Counter()
    for part in parts:
        for key, value in part.items():
            total[key] += value
    return dict(sorted(total.items()))


def merge_reports(stage: str, reports: Iterable[ShardReport]) -> ShardReport:
    """Sum of ``reports`` (all of ``stage``); the empty report when there are none.

    One pass: folding with ``ShardReport.merge`` re-sorts the shard tuple at every step,
    quadratic in the number of shards (minutes at 40,000).
    """
    reports = list(reports)
    for r in reports:
        if r.stage != stage:
            raise ValueError(f"cannot merge reports of {stage!r} and {r.stage!r}")
    return ShardReport(
        stage=stage,
        shards=tuple(sorted(s for r in reports for s in r.shards)),
        n_rows=sum(r.n_rows for r in reports),
        n_in=sum(r.n_in for r in reports),
        n_out=sum(r.n_out for r in reports),
        dropped=_add(*(r.dropped for r in reports)),
        seconds=_add(*(r.seconds for r in reports)),
        counters=_add(*(r.counters for r in reports)),
        errors=tuple(e for r in reports for e in r.errors),
    )
