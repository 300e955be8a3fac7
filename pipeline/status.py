"""Read-only views of a run directory: ``status`` (per stage) and ``inspect`` (per sample)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.dataset as ds

from manifests import schema as S
from manifests.done_summary import stage_summary
from manifests.layout import RunLayout
from manifests.report import ShardReport
from stages import STAGES
from stages.plan import PLANNING_STAGE, read_plan


class RunDirError(ValueError):
    """The path is not a run directory (or lacks what was asked); one-line message."""


@dataclass(frozen=True)
class StageStatus:
    """One stage of a run: shards planned/done/failed, and the merged report of done shards.

    ``samples_planned`` is the candidates' row count (every stage's manifest has a row per
    candidate), known once every candidates shard is done; None before.
    """

    stage: str
    planned: int
    done: int
    failed: int
    report: ShardReport
    samples_planned: int | None = None

    @property
    def missing(self) -> int:
        return self.planned - self.done - self.failed

    @property
    def samples_done(self) -> int:
        return self.report.n_rows

    def top_reasons(self, n: int = 5) -> list[tuple[str, int]]:
        return sorted(self.report.dropped.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def _layout(run_dir: Path) -> RunLayout:
    layout = RunLayout(Path(run_dir))
    if not layout.run_json.is_file():
        raise RunDirError(f"{run_dir} is not a run directory (no run.json): pass a run_dir")
    return layout


def run_status(run_dir: Path) -> list[StageStatus]:
    """Per registered stage that has started: shards planned/done/failed, merged report.

    Done shards come from ``stage_summary`` (a cached summary of the done markers, revalidated
    on every call), so this stays fast on a run of 40,000 shards.
    """
    layout = _layout(run_dir)
    try:
        planned = read_plan(layout).n_shards
    except FileNotFoundError:
        planned = 0
    failed = _failed_shards(layout)
    summaries = {
        stage: stage_summary(layout, stage) for stage in STAGES if layout.stage_dir(stage).is_dir()
    }
    samples = _samples_planned(planned, summaries.get(PLANNING_STAGE))
    out = []
    for stage, (done, report) in summaries.items():
        n_failed = len(set(failed.get(stage, ())) - done)
        total = max(planned, len(done) + n_failed)
        out.append(StageStatus(stage, total, len(done), n_failed, report, samples))
    return out


def _samples_planned(
    planned_shards: int, candidates: tuple[frozenset[int], ShardReport] | None
) -> int | None:
    """Rows of all candidates manifests, once every planned candidates shard is done."""
    if candidates is None or planned_shards == 0:
        return None
    done, report = candidates
    return report.n_rows if done >= set(range(planned_shards)) else None


def _failed_shards(layout: RunLayout) -> dict[str, list[int]]:
    path = layout.root / "report.json"
    if not path.is_file():
        return {}
    body = json.loads(path.read_text(encoding="utf-8"))
    return {stage: [int(s) for s in entry.get("skipped", {})] for stage, entry in body.items()}


def inspect_sample(run_dir: Path, sample_id: str) -> dict[str, dict[str, Any]]:
    """One sample's row in every stage's manifest, in pipeline order."""
    layout = _layout(run_dir)
    history: dict[str, dict[str, Any]] = {}
    shard = _find_shard(layout, sample_id)
    for stage in STAGES:
        path = layout.manifest(stage, shard)
        if not path.is_file():
            continue
        table = ds.dataset(path).to_table(filter=pc.field(S.SAMPLE_ID) == sample_id)
        if table.num_rows:
            history[stage] = table.to_pylist()[0]
    return history


def _find_shard(layout: RunLayout, sample_id: str) -> int:
    """The shard holding ``sample_id``, found in the candidates manifests."""
    first = next(iter(STAGES))
    files = sorted(layout.stage_dir(first).glob("[0-9]*.parquet"))
    if not files:
        raise RunDirError(f"{layout.root} has no {first} manifests yet")
    dataset = ds.dataset(files)
    hit = dataset.to_table(columns=[S.SHARD], filter=pc.field(S.SAMPLE_ID) == sample_id)
    if hit.num_rows == 0:
        raise RunDirError(f"sample_id {sample_id} is not in {layout.root}")
    return int(hit[S.SHARD][0].as_py())
