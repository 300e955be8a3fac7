"""Fetching a download shard's failed samples again (``laionface retry``), the stage's own way.

The rows of a shard's download manifest whose reject_reason a ``ReasonSelector`` matches go
to img2dataset again, through the stage's own subprocess and settings
(``stages.download.fetch_again``), in the shard's scratch space. If that changes the shard:

1. the done markers downstream are deleted (the shard's own of a shard-wise stage, every one
   of a barrier stage), so from here on any rerun recomputes what depends on the shard;
2. the download tar: the members of the retried samples are replaced by the new ones, named by
   the sample's dl_key (img2dataset numbers the retried rows from 0, which would be other
   samples' keys), every other member kept byte for byte (``download_tar.replace_samples``);
3. the manifest: the retried rows replaced, every other row exactly as it was;
4. the done marker: the report recounted; its fingerprint and run id stay, since the shard is
   still what the run's config produces, with some of its failures fetched again.

A crash between two steps leaves what the same retry, run again, completes (step 1 comes
first, so nothing downstream is left up to date with a changed shard).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import tarfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from manifests import schema as S
from manifests.io import read_manifest, read_marker, write_done, write_table_atomic
from manifests.layout import RunLayout
from manifests.verdicts import Verdicts, count
from stages.base import RunContext
from stages.download import DownloadConfig, fetch_again
from stages.download_errors import NAME
from stages.download_tar import replace_samples, sample_key
from stages.names import CANDIDATES
from stages.retry_reasons import ReasonSelector
from stages.shard.plan import read_takedown_register

# The columns a retry reads of the download manifest, and what it fetches with.
_FAILED_COLUMNS = (S.SAMPLE_ID, S.REJECT_REASON, S.DL_KEY)
_FETCH_COLUMNS = (S.SAMPLE_ID, S.URL, S.ALT_TEXT)


@dataclass(frozen=True)
class SampleRetry:
    """One retried sample: its reason before, and after (None: it downloaded this time)."""

    sample_id: str
    before: str
    after: str | None


@dataclass(frozen=True)
class ShardRetry:
    """What retrying one download shard did; ``changed``: its manifest or tar was rewritten."""

    shard: int
    samples: tuple[SampleRetry, ...]
    changed: bool


def download_reasons(layout: RunLayout, shard: int) -> Counter[str]:
    """The download stage's own reject reasons in the shard's manifest, with their counts."""
    reasons = read_manifest(layout, NAME, shard, [S.REJECT_REASON])[S.REJECT_REASON]
    return Counter(r for r in reasons.to_pylist() if r is not None and r.startswith(f"{NAME}:"))


def select_failed(layout: RunLayout, shard: int, selector: ReasonSelector) -> pa.Table:
    """The shard's samples to fetch again: ``_FAILED_COLUMNS`` plus url and alt_text, in
    manifest order. Samples on the takedown register never are (their reason is the
    takedown's already; this holds even for a manifest written before it)."""
    failed = read_manifest(layout, NAME, shard, list(_FAILED_COLUMNS))
    barred = read_takedown_register(layout)
    mask = [
        selector.matches(r) and sid not in barred
        for sid, r in zip(
            failed[S.SAMPLE_ID].to_pylist(), failed[S.REJECT_REASON].to_pylist(), strict=True
        )
    ]
    failed = failed.filter(pa.array(mask, pa.bool_()))
    cand = read_manifest(layout, CANDIDATES, shard, list(_FETCH_COLUMNS))
    where = {sid: i for i, sid in enumerate(cand[S.SAMPLE_ID].to_pylist())}
    picked = cand.take(pa.array([where[s] for s in failed[S.SAMPLE_ID].to_pylist()], pa.int64()))
    for name in _FETCH_COLUMNS[1:]:
        failed = failed.append_column(name, picked[name])
    return failed


def retry_shard(
    config: DownloadConfig,
    ctx: RunContext,
    shard: int,
    rows: pa.Table,
    downstream: Sequence[tuple[str, bool]],
) -> ShardRetry:
    """Fetch ``rows`` (from ``select_failed``) again and fold them into the shard (module
    docstring); ``downstream`` lists (stage, is_barrier) of the stages after download."""
    layout = ctx.layout
    tmp = layout.shard_tmp(NAME, shard) / "retry"
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    fresh = fetch_again(
        config, rows.select(list(_FETCH_COLUMNS)), tmp, layout.shard_log(NAME, shard)
    )
    seconds = time.perf_counter() - t0
    final = _final_keys(rows, fresh)
    renames = dict(zip(fresh[S.DL_KEY].to_pylist(), final, strict=True))
    fresh = fresh.set_column(
        fresh.column_names.index(S.DL_KEY), S.DL_KEY, pa.array(final, pa.string())
    )
    old = read_manifest(layout, NAME, shard)
    merged = _merged(old, fresh)
    members = _new_members(tmp / "out" / "00000.tar", renames)
    changed = bool(members) or not merged.equals(old)
    if changed:
        _invalidate(layout, shard, downstream)
        drop = [k for k in final if k is not None]
        replace_samples(layout.shard_file(NAME, shard, ".tar"), drop, members)
        write_table_atomic(merged, layout.manifest(NAME, shard))
        _recount(layout, shard, merged, seconds)
    shutil.rmtree(tmp, ignore_errors=True)
    return ShardRetry(shard, _outcomes(rows, fresh), changed)


def _outcomes(rows: pa.Table, fresh: pa.Table) -> tuple[SampleRetry, ...]:
    samples = zip(
        rows[S.SAMPLE_ID].to_pylist(),
        rows[S.REJECT_REASON].to_pylist(),
        fresh[S.REJECT_REASON].to_pylist(),
        strict=True,
    )
    return tuple(SampleRetry(*s) for s in samples)


def _final_keys(rows: pa.Table, fresh: pa.Table) -> list[str | None]:
    """Per retried row, the key its members get in the shard's tar (None: it has none): the
    sample's dl_key from the first download, or its sample_id (16 hex digits, never one of
    img2dataset's all-digit keys of another length) when it had none."""
    return [
        None if theirs is None else (ours or sample_id)
        for theirs, ours, sample_id in zip(
            fresh[S.DL_KEY].to_pylist(),
            rows[S.DL_KEY].to_pylist(),
            rows[S.SAMPLE_ID].to_pylist(),
            strict=True,
        )
    ]


def _merged(old: pa.Table, fresh: pa.Table) -> pa.Table:
    """``old`` with the rows of ``fresh``'s sample_ids replaced, every other value as it was."""
    position = {sid: i for i, sid in enumerate(fresh[S.SAMPLE_ID].to_pylist())}
    rows = [position.get(sid) for sid in old[S.SAMPLE_ID].to_pylist()]
    columns = {}
    for name in old.column_names:
        values = old[name].to_pylist()
        if name in fresh.column_names:
            new = fresh[name].to_pylist()
            values = [v if j is None else new[j] for v, j in zip(values, rows, strict=True)]
        columns[name] = pa.array(values, old.schema.field(name).type)
    return pa.table(columns, schema=old.schema)


def _new_members(
    tar_path: Path, keys: dict[str | None, str | None]
) -> list[tuple[tarfile.TarInfo, bytes]]:
    """The members img2dataset wrote, renamed to their samples' keys, in key order (its own
    order follows which download finished first)."""
    if not tar_path.is_file():
        return []
    found: list[tuple[str, int, tarfile.TarInfo, bytes]] = []
    with tarfile.open(tar_path, "r:") as tar:
        for i, info in enumerate(m for m in tar.getmembers() if m.isfile()):
            theirs = sample_key(info.name)
            ours = keys.get(theirs) or theirs
            handle = tar.extractfile(info)
            data = handle.read() if handle is not None else b""
            ext = info.name[len(theirs) :]
            if ext == ".json":  # img2dataset's metadata names the key too
                data = json.dumps({**json.loads(data), "key": ours}, indent=4).encode("utf-8")
            renamed = copy.copy(info)
            renamed.name, renamed.size = ours + ext, len(data)
            found.append((ours, i, renamed, data))
    return [(info, data) for _, _, info, data in sorted(found, key=lambda f: (f[0], f[1]))]


def _invalidate(layout: RunLayout, shard: int, downstream: Sequence[tuple[str, bool]]) -> None:
    for stage, barrier in downstream:
        for s in layout.done_shards(stage) if barrier else [shard]:
            layout.done_marker(stage, s).unlink(missing_ok=True)


def _recount(layout: RunLayout, shard: int, merged: pa.Table, seconds: float) -> None:
    """The shard's done marker with its report counted again from the merged manifest."""
    marker = read_marker(layout, NAME, shard)
    upstream = read_manifest(layout, CANDIDATES, shard, [S.KEEP])[S.KEEP]
    verdicts = Verdicts(
        np.asarray(merged[S.KEEP].to_numpy(zero_copy_only=False), dtype=bool),
        merged[S.REJECT_REASON].to_pylist(),
    )
    report = count(
        NAME, shard, np.asarray(upstream.to_numpy(zero_copy_only=False), dtype=bool), verdicts
    )
    if marker is not None:  # the first download's timings and counters stay; the retry's add
        spent = {**marker.report.seconds}
        spent["retry"] = spent.get("retry", 0.0) + seconds
        report = dataclasses.replace(report, seconds=spent, counters=marker.report.counters)
    write_done(layout, report, marker)
