"""Per-stage Parquet manifests: atomic writes, reads and shard-local joins on sample_id."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from manifests import schema as S
from manifests.layout import RunLayout
from manifests.report import ShardReport


def _temp_beside(path: Path) -> Path:
    # Same directory, so the final os.replace is an atomic rename on one filesystem.
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


def write_bytes_atomic(data: bytes, path: Path) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_text_atomic(text: str, path: Path) -> None:
    write_bytes_atomic(text.encode("utf-8"), path)


def write_table_atomic(table: pa.Table, path: Path) -> None:
    """Write a Parquet manifest atomically (zstd: small and fast to re-read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path)
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def read_manifest(
    layout: RunLayout, stage: str, shard: int, columns: Sequence[str] | None = None
) -> pa.Table:
    """One stage's manifest for one shard; a missing file is a clear error."""
    path = _existing(layout, stage, shard)
    return pq.read_table(path, columns=list(columns) if columns is not None else None)


def join_stages(
    layout: RunLayout, stages: Sequence[str], shard: int, columns: Sequence[str] | None = None
) -> pa.Table:
    """Join the manifests of ``stages`` for one shard on sample_id.

    The verdict columns (keep, reject_reason) are taken from the last stage listed, since each
    stage's verdict already carries every upstream one. Row order is the first stage's. With
    ``columns``, only those are read and returned (sample_id is always included).
    """
    wanted = None if columns is None else {S.SAMPLE_ID, *columns}
    joined: pa.Table | None = None
    for i, stage in enumerate(stages):
        last = i == len(stages) - 1
        have = set() if joined is None else set(joined.column_names)
        take = [
            c
            for c in pq.read_schema(_existing(layout, stage, shard)).names
            if c != S.SAMPLE_ID
            and (wanted is None or c in wanted)
            and (last if c in S.VERDICT_COLUMNS else c not in have)
        ]
        table = read_manifest(layout, stage, shard, [S.SAMPLE_ID, *take])
        joined = table if joined is None else _left_join_ordered(joined, table)
    if joined is None:
        raise ValueError("join_stages needs at least one stage")
    return (
        joined
        if columns is None
        else joined.select([S.SAMPLE_ID, *[c for c in columns if c != S.SAMPLE_ID]])
    )


def _existing(layout: RunLayout, stage: str, shard: int) -> Path:
    path = layout.manifest(stage, shard)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} is missing: run stage {stage!r} first")
    return path


def _left_join_ordered(left: pa.Table, right: pa.Table) -> pa.Table:
    """Left join on sample_id keeping ``left``'s order; works for list columns (Acero's join
    does not), and shard-local tables are small enough for a dictionary lookup."""
    position = {sid: i for i, sid in enumerate(right[S.SAMPLE_ID].to_pylist())}
    index = pa.array([position.get(sid) for sid in left[S.SAMPLE_ID].to_pylist()], pa.int64())
    picked = right.drop_columns([S.SAMPLE_ID]).take(index)
    left = left.drop_columns([c for c in picked.column_names if c in left.column_names])
    for name in picked.column_names:
        left = left.append_column(picked.schema.field(name), picked[name])
    return left


@dataclass(frozen=True)
class DoneMarker:
    """A done marker: the shard report and what produced it.

    ``fingerprint`` covers everything that decides the shard's manifest; ``score_fingerprint``
    everything but the stage's decision thresholds (None for stages without any), so a marker
    whose score fingerprint still matches can be re-decided instead of recomputed. ``run_id``
    names the run record of the invocation that wrote it.
    """

    report: ShardReport
    fingerprint: str | None = None
    score_fingerprint: str | None = None
    run_id: str | None = None

    def to_json(self) -> str:
        body = {
            "report": json.loads(self.report.to_json()),
            "fingerprint": self.fingerprint,
            "score_fingerprint": self.score_fingerprint,
            "run_id": self.run_id,
        }
        return json.dumps(body, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DoneMarker:
        data = json.loads(text)
        if "report" not in data:  # a marker from before fingerprints: the bare report
            return cls(ShardReport.from_json(text))
        return cls(
            ShardReport.from_json(json.dumps(data["report"])),
            data.get("fingerprint"),
            data.get("score_fingerprint"),
            data.get("run_id"),
        )


def write_done(layout: RunLayout, report: ShardReport, marker: DoneMarker | None = None) -> None:
    """Mark (stage, shard) done; the marker holds the report and, given ``marker``, its
    fingerprints and run id (``marker.report`` is replaced by ``report``)."""
    (shard,) = report.shards
    body = replace(marker, report=report) if marker is not None else DoneMarker(report)
    write_text_atomic(body.to_json(), layout.done_marker(report.stage, shard))


def read_marker(layout: RunLayout, stage: str, shard: int) -> DoneMarker | None:
    """The done marker of (stage, shard), or None when the shard is not done."""
    path = layout.done_marker(stage, shard)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return DoneMarker.from_json(text)


def read_done(layout: RunLayout, stage: str, shard: int) -> ShardReport | None:
    """The shard report from the done marker, or None when the shard is not done."""
    marker = read_marker(layout, stage, shard)
    return marker.report if marker is not None else None


def read_stage_reports(layout: RunLayout, stage: str) -> list[ShardReport]:
    """Reports of every done shard of ``stage``."""
    reports = []
    for shard in layout.done_shards(stage):
        report = read_done(layout, stage, shard)
        if report is not None:
            reports.append(report)
    return reports
