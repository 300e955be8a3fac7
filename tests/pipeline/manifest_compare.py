"""Comparing the manifests of two runs (used by the resume and real-cluster tests)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from manifests import schema as S
from manifests.layout import RunLayout
from stages import STAGES


def stage_table(run_dir: Path, stage: str) -> pa.Table:
    """All shards of a stage's manifest, sorted by sample_id (shard order is not identity),
    without the columns that measure time."""
    layout = RunLayout(run_dir)
    tables = [pq.read_table(layout.manifest(stage, s)) for s in layout.done_shards(stage)]
    table = pa.concat_tables(tables).sort_by(S.SAMPLE_ID)
    return table.drop_columns([c for c in table.column_names if c in S.VOLATILE_COLUMNS])


def assert_same_manifests(a: Path, b: Path, stages: list[str] | None = None) -> None:
    """Same rows and values in every stage's manifests (default: every registered stage)."""
    for stage in stages or list(STAGES):
        left, right = stage_table(a, stage), stage_table(b, stage)
        ids = left[S.SAMPLE_ID].to_pylist()
        assert len(ids) == len(set(ids)), f"{stage}: duplicate sample_id"
        assert ids == right[S.SAMPLE_ID].to_pylist(), f"{stage}: different sample_ids"
        assert left.equals(right), f"{stage}: manifests differ"
