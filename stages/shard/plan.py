"""Run-wide planning of the final shards, and the shard stage's per-input-shard manifest.

1. ``gather_part`` (one task per input shard): the publishable samples of the shard (final
   keep, image present) with their json member and their size in a tar, into a part file.
2. ``plan_assignment`` (driver): samples ordered by (input shard, sample_id), cut into output
   tars of at most ``samples_per_shard`` samples and ``max_shard_bytes`` bytes.
3. ``shard_manifest``: a pure function of the caption manifest, the assignment and the
   takedown register, used by ``run_shard``, the dataset card and takedowns alike.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests import schema as S
from manifests.io import write_table_atomic
from manifests.layout import RunLayout
from manifests.report import ShardReport
from manifests.verdicts import read_upstream
from stages.candidates import NAME as CANDIDATES
from stages.caption import NAME as CAPTION
from stages.dedup import NAME as DEDUP
from stages.download import NAME as DOWNLOAD
from stages.download_tar import find_member, open_download_tar, read_member
from stages.filter import NAME as FILTER
from stages.names import SHARD
from stages.shard.records import (
    ImageSettings,
    dumps_metadata,
    image_payload,
    sample_metadata,
    tar_member_bytes,
)

# Re-exported: the shard stage, its card and the report read the register through this module.
from stages.shard.takedown_list import TAKEDOWN_REASON as TAKEDOWN_REASON
from stages.shard.takedown_list import read_takedown_register as read_takedown_register
from stages.shard.takedown_list import write_takedown_register as write_takedown_register
from stages.shard.writer import part_columns, part_path

log = logging.getLogger(__name__)

NAME = SHARD
# The manifests joined for a published sample, in pipeline order (the shard stage's reads);
# the last, the caption stage's, carries the final verdict.
SOURCE_STAGES: tuple[str, ...] = (CANDIDATES, DOWNLOAD, FILTER, DEDUP, CAPTION)
UPSTREAM = SOURCE_STAGES[-1]
SHARD_COLUMNS: tuple[str, ...] = (
    S.SAMPLE_ID,
    S.OUT_TAR,
    S.OUT_INDEX,
    S.TAKEDOWN,
    S.KEEP,
    S.REJECT_REASON,
)
ASSIGNMENT_COLUMNS: tuple[str, ...] = (S.SAMPLE_ID, S.SHARD, S.OUT_TAR, S.OUT_INDEX)
MISSING_IMAGE_REASON = S.reason(NAME, "missing_image")


def assignment_path(layout: RunLayout) -> Path:
    return layout.stage_global(NAME) / "assignment.parquet"


def gather_part(shard: int, layout: RunLayout, settings: ImageSettings) -> int:
    """Write the part file of one input shard; returns how many samples it holds."""
    # Stages a config left out have no manifest; the caption stage's verdict is the final one.
    present = [s for s in SOURCE_STAGES if s == UPSTREAM or layout.manifest(s, shard).is_file()]
    upstream = read_upstream(layout, present, shard)
    kept = upstream.rows.filter(pa.array(upstream.keep))
    rows: list[dict] = []
    with open_download_tar(layout, shard) as (tar, members):
        for row in kept.to_pylist():
            info = find_member(members, row.get(S.DL_KEY) or "")
            if info is None:
                log.warning("%s: no image in download shard %05d", row[S.SAMPLE_ID], shard)
                continue
            rows.append(_part_row(row, shard, info.name, read_member(tar, info), settings))
    table = pa.Table.from_pylist(rows, schema=S.schema_for(part_columns()))
    write_table_atomic(table, part_path(layout, shard))
    return table.num_rows


def _part_row(
    row: dict, shard: int, member: str, data: bytes | None, settings: ImageSettings
) -> dict:
    ext = member.rsplit(".", 1)[1]
    payload = image_payload(data or b"", ext, settings)
    metadata = dumps_metadata(sample_metadata(row, payload))
    caption = row.get(S.CAPTION) or ""
    sizes = (len(payload.data), len(metadata.encode("utf-8")), len(caption.encode("utf-8")))
    out = {c: row.get(c) for c in part_columns()}
    out[S.SHARD] = shard
    out[S.OUT_IMAGE_EXT] = ext
    out[S.OUT_METADATA_JSON] = metadata
    out[S.OUT_SIZE_BYTES] = sum(tar_member_bytes(n) for n in sizes)
    return out


def tar_name(index: int) -> str:
    return f"{index:05d}.tar"


def plan_assignment(
    parts: pa.Table, samples_per_shard: int, max_shard_bytes: int, removed: frozenset[str]
) -> pa.Table:
    """Cut the samples into output tars, in (input shard, sample_id) order.

    A tar is closed before a sample that would exceed either limit; a single sample larger
    than ``max_shard_bytes`` gets a tar of its own.
    """
    gone = pa.array(sorted(removed), pa.string())
    parts = parts.filter(pc.invert(pc.is_in(parts[S.SAMPLE_ID], value_set=gone)))
    parts = parts.sort_by([(S.SHARD, "ascending"), (S.SAMPLE_ID, "ascending")])
    sizes = parts[S.OUT_SIZE_BYTES].to_pylist()
    tars, positions = [], []
    current, n, used = 0, 0, 0
    for size in sizes:
        if n > 0 and (n >= samples_per_shard or used + size > max_shard_bytes):
            current, n, used = current + 1, 0, 0
        tars.append(tar_name(current))
        positions.append(n)
        n, used = n + 1, used + size
    columns = {
        S.SAMPLE_ID: parts[S.SAMPLE_ID],
        S.SHARD: parts[S.SHARD],
        S.OUT_TAR: pa.array(tars, pa.string()),
        S.OUT_INDEX: pa.array(positions, pa.int64()),
    }
    return pa.table(columns, schema=S.schema_for(ASSIGNMENT_COLUMNS))


def read_assignment(layout: RunLayout) -> pa.Table:
    return pq.read_table(assignment_path(layout))


def shard_manifest(
    layout: RunLayout, shard: int, assignment: pa.Table, removed: frozenset[str]
) -> tuple[pa.Table, ShardReport]:
    """The shard stage's manifest of one input shard and its report (see the module doc)."""
    upstream = read_upstream(layout, (UPSTREAM,), shard, [S.SAMPLE_ID])
    mine = assignment.filter(pc.equal(assignment[S.SHARD], shard))
    placed = dict(
        zip(
            mine[S.SAMPLE_ID].to_pylist(),
            zip(mine[S.OUT_TAR].to_pylist(), mine[S.OUT_INDEX].to_pylist(), strict=True),
            strict=True,
        )
    )
    ids = upstream.rows[S.SAMPLE_ID].to_pylist()
    reasons: list[str | None] = []
    for sid in ids:
        if sid in removed:
            reasons.append(TAKEDOWN_REASON)
        elif sid not in placed:
            reasons.append(MISSING_IMAGE_REASON)
        else:
            reasons.append(None)
    verdicts = upstream.combine(reasons)
    pairs = zip(ids, verdicts.keep, strict=True)
    where = [placed.get(sid) if keep else None for sid, keep in pairs]
    table = pa.table(
        {
            S.SAMPLE_ID: upstream.rows[S.SAMPLE_ID],
            S.OUT_TAR: pa.array([w[0] if w else None for w in where], pa.string()),
            S.OUT_INDEX: pa.array([w[1] if w else None for w in where], pa.int64()),
            S.TAKEDOWN: pa.array([sid in removed for sid in ids], pa.bool_()),
            **verdicts.columns(),
        },
        schema=S.schema_for(SHARD_COLUMNS),
    )
    return table, upstream.count(NAME, shard, verdicts)
