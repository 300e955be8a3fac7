"""Driver-side progress: one bar per stage with done/total shards and kept/dropped rows.

Workers never draw bars (DESIGN.md §4); the runner feeds this board with the shard reports
that come back from the cluster.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import TracebackType

from tqdm import tqdm

from manifests.report import ShardReport


class ProgressBoard:
    """A tqdm bar per stage; a no-op when disabled."""

    def __init__(self, stages: Sequence[str], enabled: bool) -> None:
        self._enabled = enabled
        self._bars: dict[str, tqdm] = {}
        self._kept: dict[str, int] = dict.fromkeys(stages, 0)
        self._dropped: dict[str, int] = dict.fromkeys(stages, 0)
        self._skipped: dict[str, int] = dict.fromkeys(stages, 0)
        if enabled:
            width = max(len(s) for s in stages) if stages else 0
            for position, stage in enumerate(stages):
                self._bars[stage] = tqdm(
                    total=0,
                    desc=stage.ljust(width),
                    unit="shard",
                    position=position,
                    file=sys.stderr,
                    leave=True,
                    dynamic_ncols=True,
                )

    def set_total(self, stage: str, total: int) -> None:
        if stage in self._bars:
            self._bars[stage].total = total
            self._bars[stage].refresh()

    def add(self, stage: str, report: ShardReport) -> None:
        self._kept[stage] += report.n_out
        self._dropped[stage] += report.n_dropped
        self._advance(stage)

    def skip(self, stage: str) -> None:
        self._skipped[stage] += 1
        self._advance(stage)

    def _advance(self, stage: str) -> None:
        bar = self._bars.get(stage)
        if bar is None:
            return
        postfix = {"kept": self._kept[stage], "dropped": self._dropped[stage]}
        if self._skipped[stage]:
            postfix["skipped"] = self._skipped[stage]
        bar.set_postfix(postfix, refresh=False)
        bar.update(1)

    def __enter__(self) -> ProgressBoard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for bar in self._bars.values():
            bar.close()
