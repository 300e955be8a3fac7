"""``laionface takedown``: remove listed samples from a published run.

The listed samples (by URL, sample_id or URL hash; ``stages.takedown_list``) join the run's
takedown register. Only the output tars that held one of them are rewritten (with the same
deterministic writer, so a rebuilt tar is exactly what publishing without those samples would
have written there); a tar left empty is deleted. Then the shard stage's manifests and done
markers, the wids index, the checksums and the card are rewritten. Every other tar keeps its
bytes. The download cache (``RUN/download``) is not touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests import schema as S
from manifests.io import read_manifest, read_marker, write_done, write_table_atomic
from manifests.layout import RunLayout
from manifests.run_record import producing_record
from pipeline.status import RunDirError
from stages.shard import ShardConfig
from stages.shard_plan import (
    NAME,
    assignment_path,
    read_assignment,
    read_takedown_register,
    shard_manifest,
    write_takedown_register,
)
from stages.shard_publish import finalize, published_path, read_published
from stages.shard_writer import OutShard, index_name, publish_dir, write_output_tar
from stages.takedown_list import is_listed, load_takedown


@dataclass(frozen=True)
class TakedownResult:
    """What a takedown changed."""

    listed: tuple[str, ...]  # sample_ids of the run named by the list
    removed: tuple[str, ...]  # those that were published until now
    rebuilt: tuple[str, ...]  # tars rewritten without them
    deleted: tuple[str, ...]  # tars that held only listed samples
    untouched: int  # tars left byte-identical


def _listed_ids(layout: RunLayout, entries: frozenset[str]) -> set[str]:
    found: set[str] = set()
    for shard in layout.done_shards(NAME):
        cand = read_manifest(layout, "candidates", shard, [S.SAMPLE_ID, S.URL, S.URL_ORIGINAL])
        for row in cand.to_pylist():
            if is_listed(entries, row[S.SAMPLE_ID], row[S.URL] or "", row[S.URL_ORIGINAL]):
                found.add(row[S.SAMPLE_ID])
    return found


def _renumber(assignment: pa.Table, removed: set[str], tars: set[str]) -> pa.Table:
    """Drop ``removed`` rows; samples of the affected ``tars`` close up their positions."""
    gone = pa.array(sorted(removed), pa.string())
    kept = assignment.filter(pc.invert(pc.is_in(assignment[S.SAMPLE_ID], value_set=gone)))
    names = kept[S.OUT_TAR].to_pylist()
    positions = kept[S.OUT_INDEX].to_pylist()
    counters: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in tars:
            positions[i] = counters.get(name, 0)
            counters[name] = positions[i] + 1
    index = kept.column_names.index(S.OUT_INDEX)
    return kept.set_column(index, S.OUT_INDEX, pa.array(positions, pa.int64()))


def _shard_config(layout: RunLayout) -> ShardConfig:
    """The shard section the corpus was published with (the defaults without a run record)."""
    record = producing_record(layout, NAME)
    return ShardConfig.model_validate(record.section(NAME) if record is not None else {})


def _rebuild(layout: RunLayout, assignment: pa.Table, tars: set[str]) -> dict[str, OutShard]:
    settings = _shard_config(layout).image
    out: dict[str, OutShard] = {}
    for name in sorted(tars):
        rows = assignment.filter(pc.equal(assignment[S.OUT_TAR], name))
        if rows.num_rows:
            out[name] = write_output_tar(layout, name, rows, settings)
        else:
            (publish_dir(layout) / name).unlink(missing_ok=True)
            (publish_dir(layout) / index_name(name)).unlink(missing_ok=True)
    return out


def _rewrite_manifests(layout: RunLayout, assignment: pa.Table, removed: frozenset[str]) -> None:
    for shard in layout.done_shards(NAME):
        table, report = shard_manifest(layout, shard, assignment, removed)
        if not table.equals(pq.read_table(layout.manifest(NAME, shard))):
            write_table_atomic(table, layout.manifest(NAME, shard))
            write_done(layout, report, read_marker(layout, NAME, shard))


def apply_takedown(run_dir: Path, list_file: Path) -> TakedownResult:
    """Remove every sample named in ``list_file`` from the published corpus of ``run_dir``."""
    layout = RunLayout(Path(run_dir))
    published = read_published(layout)
    if published is None:
        raise RunDirError(f"{run_dir}: nothing published yet ({published_path(layout)} missing)")
    # Read the list afresh: load_takedown caches per path for workers, a CLI call must not.
    entries = load_takedown.__wrapped__(Path(list_file))
    listed = _listed_ids(layout, entries)
    register = read_takedown_register(layout) | listed
    write_takedown_register(layout, register)
    assignment = read_assignment(layout)
    hit = assignment.filter(
        pc.is_in(assignment[S.SAMPLE_ID], value_set=pa.array(sorted(listed), pa.string()))
    )
    tars = set(hit[S.OUT_TAR].to_pylist())
    assignment = _renumber(assignment, listed, tars)
    write_table_atomic(assignment, assignment_path(layout))
    rebuilt = _rebuild(layout, assignment, tars)
    shards = [rebuilt.get(s.name, s) for s in published if s.name not in tars or s.name in rebuilt]
    name = json.loads(published_path(layout).read_text(encoding="utf-8"))["dataset_name"]
    finalize(layout, shards, name)
    _rewrite_manifests(layout, assignment, register)
    return TakedownResult(
        listed=tuple(sorted(listed)),
        removed=tuple(sorted(hit[S.SAMPLE_ID].to_pylist())),
        rebuilt=tuple(sorted(rebuilt)),
        deleted=tuple(sorted(tars - set(rebuilt))),
        untouched=len(published) - len(tars),
    )
