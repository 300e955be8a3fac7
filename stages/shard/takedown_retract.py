"""Retracting taken-down samples from the stage manifests, as if the run had been made with
them on the takedown register.

A listed sample that the candidates stage kept is rejected there with ``takedown:requested``
(the reason ``stages.candidates`` gives a registered sample on a rerun), and every later stage
passes that first reason on (``manifests.verdicts.combine``). So each of its rows becomes what a
rerun of that stage writes for a row it did not receive: the download stage's ``dl_key`` is
cleared (the bytes are purged from the tar, and ``dl_status`` says ``taken_down`` where the
download had succeeded), the filter's measurements and the caption stage's captions are cleared.
Rows stay (DESIGN.md §3). Done markers keep their fingerprints, which derive from the config
alone, and get reports recounted from the new verdicts: a rerun of the same config finds every
shard up to date, and a recompute of any stage writes what the retraction wrote.
"""

from __future__ import annotations

import dataclasses
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests import schema as S
from manifests.io import read_manifest, read_marker, write_done, write_table_atomic
from manifests.layout import RunLayout
from manifests.verdicts import Verdicts, count
from stages.download_errors import SUCCESS
from stages.names import CANDIDATES, CAPTION, DOWNLOAD, FILTER
from stages.shard.plan import SOURCE_STAGES
from stages.shard.takedown_list import TAKEDOWN_REASON
from stages.shard.takedown_purge import place

# dl_status of a sample whose downloaded bytes a takedown removed from RUN/download.
TAKEN_DOWN: Final = "taken_down"
# Stages whose columns are measured on the images of the rows they receive; a row they did not
# receive has none of them (stages.filter scores only rows kept upstream, stages.caption
# captions only those).
_MEASURED_STAGES: Final = frozenset({FILTER, CAPTION})


def retract_shard(layout: RunLayout, shard: int, sample_ids: frozenset[str]) -> dict[str, set[str]]:
    """Retract those of ``sample_ids`` that the candidates stage of ``shard`` still keeps.

    Returns, per retracted sample_id, the manifests (paths under RUN) from which measured
    content of it (scores, boxes, landmarks, captions) was cleared.
    """
    cand = read_manifest(layout, CANDIDATES, shard, [S.SAMPLE_ID, S.KEEP])
    kept = pc.fill_null(cand[S.KEEP], False).to_pylist()
    hit = frozenset(s for s, k in zip(cand[S.SAMPLE_ID].to_pylist(), kept, strict=True) if k)
    hit &= sample_ids
    places: dict[str, set[str]] = {}
    if not hit:
        return places
    upstream: dict[str, bool] | None = None  # the previous stage's new verdicts
    for stage in SOURCE_STAGES:
        path = layout.manifest(stage, shard)
        if not path.is_file():  # a stage the config left out
            continue
        table, cleared = _retract_table(stage, pq.read_table(path), hit)
        write_table_atomic(table, path)
        ids = table[S.SAMPLE_ID].to_pylist()
        keep = np.asarray(table[S.KEEP].to_numpy(zero_copy_only=False), dtype=bool)
        _recount(layout, stage, shard, table, _upstream_keep(ids, upstream))
        upstream = dict(zip(ids, keep.tolist(), strict=True))
        for sample_id in cleared:
            places.setdefault(sample_id, set()).add(place(layout, path))
    return places


def _upstream_keep(ids: list[str], upstream: dict[str, bool] | None) -> np.ndarray:
    """What reached the stage: everything for the first stage, else the previous verdicts."""
    if upstream is None:
        return np.ones(len(ids), dtype=bool)
    return np.asarray([upstream[i] for i in ids], dtype=bool)


def _retract_table(stage: str, table: pa.Table, hit: frozenset[str]) -> tuple[pa.Table, set[str]]:
    """The manifest with the ``hit`` rows retracted, and the ids whose measured content went."""
    mask = pc.is_in(table[S.SAMPLE_ID], value_set=pa.array(sorted(hit), pa.string()))
    cleared: set[str] = set()
    for name in table.column_names:
        column = table[name]
        if name == S.KEEP:
            new = pc.if_else(mask, False, column)
        elif name == S.REJECT_REASON:
            new = pc.if_else(mask, TAKEDOWN_REASON, column)
        elif stage == DOWNLOAD and name == S.DL_KEY:
            new = pc.if_else(mask, pa.scalar(None, column.type), column)
        elif stage == DOWNLOAD and name == S.DL_STATUS:
            succeeded = pc.and_(mask, pc.equal(column, SUCCESS))
            new = pc.if_else(succeeded, TAKEN_DOWN, column)
        elif stage in _MEASURED_STAGES and name != S.SAMPLE_ID:
            had = pc.and_(mask, pc.is_valid(column))
            cleared.update(pc.filter(table[S.SAMPLE_ID], had).to_pylist())
            new = pc.if_else(mask, pa.scalar(None, column.type), column)
        else:
            continue
        index = table.column_names.index(name)
        table = table.set_column(index, table.schema.field(index), new.cast(column.type))
    return table, cleared


def _recount(
    layout: RunLayout, stage: str, shard: int, table: pa.Table, upstream: np.ndarray
) -> None:
    """Recount the done marker's report from the new verdicts; timings, counters, errors and
    fingerprints stay as the run wrote them."""
    marker = read_marker(layout, stage, shard)
    if marker is None:  # not done: a rerun computes it from the retracted upstream
        return
    old = marker.report
    keep = np.asarray(table[S.KEEP].to_numpy(zero_copy_only=False), dtype=bool)
    after = Verdicts(keep, table[S.REJECT_REASON].to_pylist())
    report = count(stage, shard, upstream, after, old.seconds, old.counters)
    write_done(layout, dataclasses.replace(report, errors=old.errors), marker)
