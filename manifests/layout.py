"""Where everything of a run lives on disk (DESIGN.md §3).

```
RUN/run.json                          resolved config, schema version, versions, git revision
RUN/<stage>/<shard:05d>.parquet       the stage's manifest for one shard
RUN/<stage>/_done/<shard:05d>.json    done marker holding the shard report
RUN/<stage>/_logs/<shard:05d>.log     the worker's log for that shard
RUN/<stage>/_tmp/<shard:05d>/         scratch space of a shard in flight (discarded on rerun)
RUN/<stage>/_global/                  run-wide state of a stage that needs it (e.g. dedup)
RUN/download/<shard:05d>.tar          downloaded bytes, members keyed by dl_key
RUN/shards/                           the published WebDataset corpus
RUN/audit.html                        the audit report (thumbnails inline), audit.json beside it
RUN/takedowns/register.json           sample_ids removed by takedown requests (never undone)
RUN/takedowns/<stamp>.json            one record per takedown: every place each sample left
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run directory; pure path arithmetic, no I/O."""

    root: Path

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def manifest(self, stage: str, shard: int) -> Path:
        return self.stage_dir(stage) / f"{shard:05d}.parquet"

    def done_marker(self, stage: str, shard: int) -> Path:
        return self.stage_dir(stage) / "_done" / f"{shard:05d}.json"

    def shard_log(self, stage: str, shard: int) -> Path:
        return self.stage_dir(stage) / "_logs" / f"{shard:05d}.log"

    def shard_tmp(self, stage: str, shard: int) -> Path:
        return self.stage_dir(stage) / "_tmp" / f"{shard:05d}"

    def stage_global(self, stage: str) -> Path:
        return self.stage_dir(stage) / "_global"

    def shard_file(self, stage: str, shard: int, suffix: str) -> Path:
        """A per-shard side file of a stage, e.g. ``download/00003.tar``."""
        return self.stage_dir(stage) / f"{shard:05d}{suffix}"

    @property
    def audit_report(self) -> Path:
        """Where ``laionface report`` writes the HTML audit report by default."""
        return self.root / "audit.html"

    @property
    def takedown_dir(self) -> Path:
        """Run-wide takedown state: beside the stages, since candidates and shard both read it."""
        return self.root / "takedowns"

    @property
    def takedown_register(self) -> Path:
        return self.takedown_dir / "register.json"

    def takedown_record(self, stamp: str) -> Path:
        """The record of one takedown, named by its UTC time stamp."""
        return self.takedown_dir / f"{stamp}.json"

    def done_shards(self, stage: str) -> list[int]:
        """Shards of ``stage`` whose done marker exists, sorted."""
        done_dir = self.stage_dir(stage) / "_done"
        if not done_dir.is_dir():
            return []
        return sorted(int(p.stem) for p in done_dir.glob("[0-9]*.json"))
