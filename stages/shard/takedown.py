"""Take listed samples down: out of a published run, and out of every cache of their bytes in
the run directory (``laionface takedown``, ``pipeline.takedown``, is the command over it).

The listed samples (by URL, sample_id or URL hash; ``stages.shard.takedown_list``) join the run's
takedown register, which the candidates stage applies on every rerun, so no rerun downloads or
publishes them again. Then, in an order that a takedown run again after a crash completes:

1. the published tars that held one are rewritten (with the same deterministic writer, so a
   rebuilt tar is exactly what publishing without those samples would have written there); a
   tar left empty is deleted; every other tar keeps its bytes;
2. per input shard: the shard stage's part file, the download tar (``stages.shard.takedown_purge``),
   then the manifests and done-marker reports of candidates .. caption
   (``stages.shard.takedown_retract``: as if the run had been made with the register);
3. the wids index, the subsets' indexes and sample lists (``stages.shard.subsets``), the
   checksums, the card, the shard stage's manifests and markers;
4. scratch space of the shards concerned, then caches the stage does not own that the caller
   names (``extra``: the command passes the audit report, which may show a thumbnail).

Each place a sample was removed from is in ``TakedownResult.places`` and in the takedown's
record, ``RUN/takedowns/<stamp>.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests import schema as S
from manifests.io import (
    read_manifest,
    read_marker,
    write_done,
    write_table_atomic,
    write_text_atomic,
)
from manifests.layout import RunLayout
from manifests.report import ShardReport
from manifests.run_record import producing_record
from stages.candidates import NAME as CANDIDATES
from stages.shard.plan import (
    NAME,
    assignment_path,
    read_assignment,
    read_takedown_register,
    shard_manifest,
    write_takedown_register,
)
from stages.shard.publish import finalize, published_path
from stages.shard.stage import ShardConfig
from stages.shard.subsets import read_subset_list, subset_list_name, subset_wids_name, subsets
from stages.shard.takedown_list import is_listed
from stages.shard.takedown_purge import (
    Places,
    add_places,
    discard_scratch,
    place,
    purge_download_shard,
    purge_part,
)
from stages.shard.takedown_retract import retract_shard
from stages.shard.writer import OutShard, index_name, publish_dir, write_output_tar


@dataclass(frozen=True)
class TakedownResult:
    """What a takedown changed."""

    listed: tuple[str, ...]  # sample_ids of the run named by the list
    removed: tuple[str, ...]  # those that were published until now
    rebuilt: tuple[str, ...]  # tars rewritten without them
    deleted: tuple[str, ...]  # tars that held only listed samples
    untouched: int  # tars left byte-identical
    # Per listed sample_id, every place (path under RUN) its bytes or content left: published
    # tars and indexes, the download tar, the part file, the filter and caption manifests, the
    # audit report. Empty for a sample held nowhere (e.g. never downloaded, or taken down before).
    places: Mapping[str, tuple[str, ...]]
    scratch: tuple[str, ...]  # scratch dirs and stale temp files discarded whole
    record: Path  # the record of this takedown, RUN/takedowns/<stamp>.json


@dataclass(frozen=True)
class _Unpublished:
    """Step 1's outcome: the published tars after it, and what it did."""

    shards: list[OutShard]
    removed: dict[str, str]  # sample_id -> the tar it left
    rebuilt: tuple[str, ...]
    deleted: tuple[str, ...]
    untouched: int


def _listed_ids(layout: RunLayout, entries: frozenset[str]) -> dict[int, frozenset[str]]:
    """The listed sample_ids per input shard: of every planned shard, published or not."""
    found: dict[int, frozenset[str]] = {}
    for shard in layout.done_shards(CANDIDATES):
        cand = read_manifest(layout, CANDIDATES, shard, [S.SAMPLE_ID, S.URL, S.URL_ORIGINAL])
        ids = frozenset(
            row[S.SAMPLE_ID]
            for row in cand.to_pylist()
            if is_listed(entries, row[S.SAMPLE_ID], row[S.URL] or "", row[S.URL_ORIGINAL])
        )
        if ids:
            found[shard] = ids
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
    """The shard stage's manifests and reports; a retraction upstream may change the report
    of a manifest that stays the same (a sample that now arrives rejected)."""
    for shard in layout.done_shards(NAME):
        table, report = shard_manifest(layout, shard, assignment, removed)
        marker = read_marker(layout, NAME, shard)
        if not table.equals(pq.read_table(layout.manifest(NAME, shard))):
            write_table_atomic(table, layout.manifest(NAME, shard))
        elif marker is not None and _counts(marker.report) == _counts(report):
            continue
        write_done(layout, report, marker)


def _counts(report: ShardReport) -> tuple[int, int, int, dict[str, int]]:
    return report.n_rows, report.n_in, report.n_out, report.dropped


def _unpublish(layout: RunLayout, published: list[OutShard], listed: set[str]) -> _Unpublished:
    """Step 1: the published tars without the listed samples (module docstring)."""
    assignment = read_assignment(layout)
    hit = assignment.filter(
        pc.is_in(assignment[S.SAMPLE_ID], value_set=pa.array(sorted(listed), pa.string()))
    )
    removed = dict(zip(hit[S.SAMPLE_ID].to_pylist(), hit[S.OUT_TAR].to_pylist(), strict=True))
    tars = set(removed.values())
    assignment = _renumber(assignment, listed, tars)
    write_table_atomic(assignment, assignment_path(layout))
    rebuilt = _rebuild(layout, assignment, tars)
    shards = [rebuilt.get(s.name, s) for s in published if s.name not in tars or s.name in rebuilt]
    return _Unpublished(
        shards=shards,
        removed=removed,
        rebuilt=tuple(sorted(rebuilt)),
        deleted=tuple(sorted(tars - set(rebuilt))),
        untouched=len(published) - len(tars),
    )


def _published_places(layout: RunLayout, removed: dict[str, str]) -> Places:
    out = publish_dir(layout)
    return {
        sid: {place(layout, out / tar), place(layout, out / index_name(tar))}
        for sid, tar in removed.items()
    }


def _subset_places(layout: RunLayout, listed: frozenset[str]) -> Places:
    """The subset files (sample list and wids index) that list a listed sample, read before
    step 3 rewrites them without it."""
    out = publish_dir(layout)
    places: Places = {}
    for subset in subsets():
        found = read_subset_list(out, subset)
        files = {place(layout, out / subset_list_name(subset)),
                 place(layout, out / subset_wids_name(subset))}  # fmt: skip
        for sid in listed.intersection(found["sample_ids"] if found else ()):
            places.setdefault(sid, set()).update(files)
    return places


def _purge_shards(layout: RunLayout, by_shard: dict[int, frozenset[str]]) -> Places:
    """Step 2 for every input shard holding a listed sample (module docstring)."""
    places: Places = {}
    for shard, ids in sorted(by_shard.items()):
        add_places(places, purge_part(layout, shard, ids))
        add_places(places, purge_download_shard(layout, shard, ids))
        add_places(places, retract_shard(layout, shard, ids))
    return places


# A cache outside the stage (e.g. the audit report): purges the listed sample_ids from it,
# returns the places it removed each from.
ExtraPurge = Callable[[RunLayout, frozenset[str]], Places]


def take_down(
    layout: RunLayout,
    published: list[OutShard],
    entries: frozenset[str],
    list_file: Path,
    extra: Sequence[ExtraPurge] = (),
) -> TakedownResult:
    """Remove every sample that ``entries`` (read from ``list_file``) names from the run under
    ``layout``, whose publication is ``published`` (``publish.read_published``), and from every
    cache of their bytes (the module docstring), ``extra`` last; writes the takedown's record."""
    by_shard = _listed_ids(layout, entries)
    listed = frozenset().union(*by_shard.values())
    register = read_takedown_register(layout) | listed
    write_takedown_register(layout, register)
    unpublished = _unpublish(layout, published, set(listed))
    places = _published_places(layout, unpublished.removed)
    add_places(places, _subset_places(layout, listed))
    add_places(places, _purge_shards(layout, by_shard))
    # Before finalize, which also clears stale temp files from RUN/shards: each is listed.
    scratch = discard_scratch(layout, by_shard)
    name = json.loads(published_path(layout).read_text(encoding="utf-8"))["dataset_name"]
    finalize(layout, unpublished.shards, name)  # after step 2: the card counts its markers
    _rewrite_manifests(layout, read_assignment(layout), register)
    for purge in extra:
        add_places(places, purge(layout, listed))
    result = TakedownResult(
        listed=tuple(sorted(listed)),
        removed=tuple(sorted(unpublished.removed)),
        rebuilt=unpublished.rebuilt,
        deleted=unpublished.deleted,
        untouched=unpublished.untouched,
        places={sid: tuple(sorted(places.get(sid, ()))) for sid in sorted(listed)},
        scratch=tuple(scratch),
        record=_record_path(layout),
    )
    _write_record(result, list_file)
    return result


def _record_path(layout: RunLayout) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return layout.takedown_record(stamp)


def _write_record(result: TakedownResult, list_file: Path) -> None:
    """The takedown's record: what was asked, and every place each sample was removed from."""
    body = {
        "list_file": str(list_file.resolve()),
        "listed": list(result.listed),
        "removed_from_published": list(result.removed),
        "places": {sid: list(where) for sid, where in result.places.items()},
        "rebuilt": list(result.rebuilt),
        "deleted": list(result.deleted),
        "untouched": result.untouched,
        "scratch": list(result.scratch),
    }
    write_text_atomic(json.dumps(body, indent=2, sort_keys=True), result.record)
