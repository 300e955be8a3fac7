"""Streaming ingest of the candidates stage: input parquet in, one small parquet per shard out.

A task's memory is bounded by a batch (pass 1) or a bucket (pass 2), never by an input file,
and the per-shard gather of ``run_shard`` reads one small file. Two passes of Dask tasks:

1. ``read_range``, one task per input file or range of its row groups (about
   ``ingest_task_rows`` rows): streams ``ingest_batch_rows`` rows at a time, keeps the rows the
   include lists name, normalizes the URLs and tags each row with its shard (``locate``), and
   every few batches appends the rows to the file of their bucket: a contiguous range of
   shards sized to hold about ``ingest_bucket_rows`` rows.
2. ``write_bucket``, one task per bucket: reads the bucket's file of every pass-1 task and
   writes one parquet per shard, its rows in input order (file, then row: the first copy of a
   URL owns its sample_id).

```
RUN/candidates/_global/ingest.json                         done: key, counts, seconds
RUN/candidates/_global/include-<digest>/                   compiled include ids
RUN/candidates/_global/ingest-<key>/rows/<shard:05d>.parquet          what run_shard reads
RUN/candidates/_global/ingest-<key>/pass1-<layout>/t<task:05d>/<bucket:05d>.arrows  (pass 1)
```

``key`` digests what the rows depend on (inputs, column_map, keep_columns, include lists,
n_shards), so intermediate files are reused only when produced from the same; ``layout``
digests how pass 1 split the work, so a change of the speed knobs never mixes two splits.
Files are written under a temp name and renamed (a pass-1 task's whole directory at once).
A bucket file is a sequence of length-prefixed Arrow IPC streams, one per flush, appended:
a pass-1 task holds one file open at a time, however many buckets there are.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from manifests import schema as S
from manifests.io import write_bytes_atomic, write_table_atomic, write_text_atomic
from stages.include_list import IncludeIds, open_include
from stages.laion_input import InputFile, iter_input
from stages.urls import UrlProblem, derived_sample_id, normalize_url, url_hash

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)

STAGE = "candidates"
_COUNTS = "counts.json"
_SCHEMA = "schema.arrow"
# lz4: half the bytes written and read back (I/O dominates pass 2 at scale), and decoded
# buffers are owned per column, so pass 2 never holds a bucket's file bytes and its rows both.
_IPC = pa.ipc.IpcWriteOptions(compression="lz4")
# Pass 1 holds up to this many batches of located rows before appending them to the bucket
# files: fewer, larger streams for pass 2 to read, for a few batches more memory.
_SPOOL_BATCHES = 4


@dataclass(frozen=True)
class ReadTask:
    """Pass 1's unit: row groups ``row_groups`` of ``path``; ``first_row`` is the file row
    index of their first row (source_row counts from the start of the file)."""

    index: int
    path: str
    row_groups: tuple[int, ...]
    first_row: int


@dataclass(frozen=True)
class IngestSpec:
    """What every ingest task needs to know; small and picklable."""

    root: Path  # RUN/candidates/_global/ingest-<key>
    layout: str
    n_shards: int
    shards_per_bucket: int
    column_map: dict[str, str]
    keep_columns: tuple[str, ...]
    include_dir: str | None
    batch_rows: int

    @property
    def key(self) -> str:
        return self.root.name.removeprefix("ingest-")

    @property
    def n_buckets(self) -> int:
        return -(-self.n_shards // self.shards_per_bucket)

    @property
    def pass1_dir(self) -> Path:
        return self.root / f"pass1-{self.layout}"

    def bucket_shards(self, bucket: int) -> range:
        start = bucket * self.shards_per_bucket
        return range(start, min(self.n_shards, start + self.shards_per_bucket))


@dataclass(frozen=True)
class IngestSummary:
    """The done marker of an ingest (``ingest.json``): what entered the run and what the
    include lists left out (not rejections: those rows have no manifest row)."""

    key: str
    rows_read: int
    rows_in: int
    excluded_by_include: int
    seconds: dict[str, float] = field(default_factory=dict)


def rows_file(root: Path, shard: int) -> Path:
    """The rows of one shard, in input order, as ``run_shard`` reads them."""
    return root / "rows" / f"{shard:05d}.parquet"


def plan_read_tasks(files: Sequence[InputFile], task_rows: int) -> list[ReadTask]:
    """Each file's row groups cut into consecutive ranges of about ``task_rows`` rows."""
    tasks: list[ReadTask] = []
    for f in files:
        groups: list[int] = []
        first = rows = 0
        for group, n in enumerate(f.row_groups):
            if groups and rows + n > task_rows:
                tasks.append(ReadTask(len(tasks), f.path, tuple(groups), first))
                first, rows, groups = first + rows, 0, []
            groups.append(group)
            rows += n
        tasks.append(ReadTask(len(tasks), f.path, tuple(groups), first))
    return tasks


def shards_per_bucket(n_shards: int, n_rows: int, bucket_rows: int) -> int:
    """Shards per bucket so a bucket holds about ``bucket_rows`` of the ``n_rows`` rows spread
    over ``n_shards``: the same bucket size whatever the number of rows, so a pass-2 task's
    memory does not depend on the size of the run."""
    per_shard = max(1, n_rows) / n_shards
    return max(1, min(n_shards, int(bucket_rows // per_shard)))


def read_summary(path: Path) -> IngestSummary | None:
    if not path.is_file():
        return None
    return IngestSummary(**json.loads(path.read_text(encoding="utf-8")))


def remove_stale(directory: Path, prefixes: tuple[str, ...], keep: set[str]) -> None:
    """Delete the subdirectories of ``directory`` whose name starts with one of ``prefixes``,
    except those in ``keep``: intermediate files of other keys or layouts."""
    if not directory.is_dir():
        return
    for child in directory.iterdir():
        if child.is_dir() and child.name.startswith(prefixes) and child.name not in keep:
            log.info("removing stale ingest files %s", child)
            shutil.rmtree(child, ignore_errors=True)


def build_rows(
    client: Client, spec: IngestSpec, tasks: Sequence[ReadTask], summary_path: Path
) -> IngestSummary:
    """Run both passes on the cluster (skipping what is done) and write ``summary_path``."""
    summary = read_summary(summary_path)
    if summary is not None and summary.key == spec.key:
        return summary
    remove_stale(spec.root, ("pass1-",), {spec.pass1_dir.name})
    t0 = time.perf_counter()
    todo = [t for t in tasks if not (_task_dir(spec, t.index) / _COUNTS).is_file()]
    client.gather(client.map(read_range, todo, spec=spec, pure=False))
    t1 = time.perf_counter()
    buckets = list(range(spec.n_buckets))
    client.gather(client.map(write_bucket, buckets, spec=spec, n_tasks=len(tasks), pure=False))
    t2 = time.perf_counter()
    counts = [_read_counts(_task_dir(spec, t.index)) for t in tasks]
    summary = IngestSummary(
        key=spec.key,
        rows_read=sum(c["rows_read"] for c in counts),
        rows_in=sum(c["rows_in"] for c in counts),
        excluded_by_include=sum(c["excluded_by_include"] for c in counts),
        seconds={"read": t1 - t0, "bucket": t2 - t1},
    )
    write_text_atomic(json.dumps(asdict(summary), indent=2), summary_path)
    shutil.rmtree(spec.pass1_dir, ignore_errors=True)
    log.info("candidates ingest: %d rows in, %.1f s + %.1f s", summary.rows_in, t1 - t0, t2 - t1)
    return summary


def read_range(task: ReadTask, spec: IngestSpec) -> dict[str, int]:
    """Pass 1 (a Dask task): stream one range into per-bucket files; its row counts."""
    final = _task_dir(spec, task.index)
    if (final / _COUNTS).is_file():
        return _read_counts(final)
    tmp = spec.pass1_dir / f".t{task.index:05d}-{uuid.uuid4().hex}.tmp"
    tmp.mkdir(parents=True)
    include = open_include(spec.include_dir) if spec.include_dir else None
    batches = iter_input(
        task.path, spec.column_map, spec.keep_columns, task.row_groups, spec.batch_rows
    )
    spool = _Spool(tmp, spec.shards_per_bucket, _SPOOL_BATCHES * spec.batch_rows)
    rows_read = rows_in = 0
    for i, table in enumerate(batches):
        rows = np.arange(rows_read, rows_read + table.num_rows) + task.first_row
        rows_read += table.num_rows
        located = _select_and_locate(table, rows, task.path, spec.n_shards, include)
        if i == 0:  # the empty first table: the range's schema, for buckets left empty
            write_bytes_atomic(located.schema.serialize().to_pybytes(), tmp / _SCHEMA)
        rows_in += located.num_rows
        spool.add(located)
    spool.flush()
    counts = {
        "rows_read": rows_read,
        "rows_in": rows_in,
        "excluded_by_include": rows_read - rows_in,
    }
    write_text_atomic(json.dumps(counts), tmp / _COUNTS)
    _publish_dir(tmp, final)
    return counts


def write_bucket(bucket: int, spec: IngestSpec, n_tasks: int) -> int:
    """Pass 2 (a Dask task): one bucket's rows into one parquet per shard; rows written.

    The bucket's chunks are read in task order, then flush order, which is input order; a
    stable sort by shard keeps that order within each shard.
    """
    shards = spec.bucket_shards(bucket)
    outputs = [rows_file(spec.root, s) for s in shards]
    if all(p.is_file() for p in outputs):
        return 0
    files = [_task_dir(spec, t) / f"{bucket:05d}.arrows" for t in range(n_tasks)]
    chunks = [t for f in files if f.is_file() for t in _read_streams(f)]
    if not chunks:
        schema = pa.ipc.read_schema(pa.py_buffer((_task_dir(spec, 0) / _SCHEMA).read_bytes()))
        chunks = [schema.empty_table()]
    table, shard = _concat_sorted(chunks, 1)
    bounds = np.searchsorted(shard, np.arange(shards.start, shards.stop + 1))
    for i, path in enumerate(outputs):
        write_table_atomic(table.slice(bounds[i], bounds[i + 1] - bounds[i]), path)
    for f in files:
        f.unlink(missing_ok=True)  # the rows are in place: free the disk early
    return int(table.num_rows)


_Located = tuple[str | None, str | None, str | None, str | None, int]


def locate(raw: object, path: str, row: int, n_shards: int) -> _Located:
    """(url, host, url sha1, problem reason, shard) of one input row.

    The shard is the URL hash modulo ``n_shards`` (so every copy of a URL lands in one shard);
    a row without a usable URL is placed by a hash of where it came from.
    """
    try:
        norm = normalize_url(raw)
    except UrlProblem as problem:
        shard = int(derived_sample_id(path, row), 16) % n_shards
        return None, None, None, S.reason(STAGE, problem.why), shard
    digest = url_hash(norm.url)
    return norm.url, norm.host, digest, None, int(digest[:15], 16) % n_shards


def locate_batch(table: pa.Table, path: str, rows: np.ndarray, n_shards: int) -> pa.Table:
    """``table`` plus the planning columns: normalized URL, host, hash, problem, shard, and
    where each row came from (``rows``: its row index in ``path``)."""
    raws = table[S.URL_ORIGINAL].to_pylist()
    located = [
        locate(raw, path, row, n_shards) for raw, row in zip(raws, rows.tolist(), strict=True)
    ]
    urls, hosts, hashes, problems, shards = (
        (list(c) for c in zip(*located, strict=True)) if located else ([], [], [], [], [])
    )
    extra = {
        S.URL: pa.array(urls, pa.string()),
        S.URL_HOST: pa.array(hosts, pa.string()),
        S.URL_SHA1: pa.array(hashes, pa.string()),
        S.REJECT_REASON: pa.array(problems, pa.string()),
        S.SHARD: pa.array(shards, pa.int32()),
        S.SOURCE_FILE: pa.array([path] * table.num_rows, pa.string()),
        S.SOURCE_ROW: pa.array(rows, pa.int64()),
    }
    for name, array in extra.items():
        table = table.append_column(name, array)
    return table


def _select_and_locate(
    table: pa.Table, rows: np.ndarray, path: str, n_shards: int, include: IncludeIds | None
) -> pa.Table:
    """The batch's rows that enter the run, located. Listed SAMPLE_IDs are matched before
    any URL is normalized; URL hashes need the normalized URL, so then every row is."""
    if include is None:
        return locate_batch(table, path, rows, n_shards)
    keep = include.match_source(table[S.SOURCE_SAMPLE_ID].combine_chunks())
    if not include.has_hashes:
        picked = np.flatnonzero(keep)
        return locate_batch(table.take(picked), path, rows[picked], n_shards)
    located = locate_batch(table, path, rows, n_shards)
    keep |= include.match_hashes(located[S.URL_SHA1].to_pylist())
    return located.filter(pa.array(keep))


class _Spool:
    """Pass 1's output: located rows gathered up to ``cap`` rows, then appended to their
    bucket files. One flush writes one stream per bucket, so the number of streams (and pass
    2's cost of reading them) grows with rows / ``cap``, not with the number of batches."""

    def __init__(self, directory: Path, per_bucket: int, cap: int) -> None:
        self._directory = directory
        self._per_bucket = per_bucket
        self._cap = cap
        self._pending: list[pa.Table] = []
        self._rows = 0

    def add(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._rows += table.num_rows
        if self._rows >= self._cap:
            self.flush()

    def flush(self) -> None:
        """Append the pending rows to their bucket files, one stream per bucket."""
        if not self._rows:
            return
        table, buckets = _concat_sorted(self._pending, self._per_bucket)
        cuts = [0, *(np.flatnonzero(np.diff(buckets)) + 1).tolist(), len(buckets)]
        for lo, hi in itertools.pairwise(cuts):
            path = self._directory / f"{int(buckets[lo]):05d}.arrows"
            _append_stream(path, table.slice(lo, hi - lo))
        self._rows = 0


def _concat_sorted(tables: list[pa.Table], per_bucket: int) -> tuple[pa.Table, np.ndarray]:
    """The rows of ``tables`` (which it empties) stably sorted by ``shard // per_bucket``, and
    those sorted keys. Stable: rows of one key stay in input order.

    One take, a column at a time, each source column released once taken (so only one column
    is ever held twice), then zero-copy slices: a take from a table of many chunks costs about
    as much for a hundred rows as for all of them.
    """
    table = pa.concat_tables(tables, promote_options="default")
    tables.clear()
    keys = table[S.SHARD].to_numpy() // per_bucket
    order = np.argsort(keys, kind="stable")
    columns: dict[str, pa.ChunkedArray] = {}
    for name in table.column_names:
        columns[name] = table.column(name).take(order)
        table = table.drop_columns([name])
    return pa.table(columns), keys[order]


def _append_stream(path: Path, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=_IPC) as writer:
        writer.write_table(table)
    data = sink.getvalue()
    with path.open("ab") as handle:
        handle.write(data.size.to_bytes(8, "little"))
        handle.write(data)


def _read_streams(path: Path) -> list[pa.Table]:
    """The tables appended to a bucket file, in order (see ``_append_stream``)."""
    tables: list[pa.Table] = []
    with pa.OSFile(str(path)) as handle:
        while header := handle.read(8):
            stream = handle.read_buffer(int.from_bytes(header, "little"))
            tables.append(pa.ipc.open_stream(stream).read_all())
    return tables


def _task_dir(spec: IngestSpec, index: int) -> Path:
    return spec.pass1_dir / f"t{index:05d}"


def _read_counts(directory: Path) -> dict[str, int]:
    counts: dict[str, int] = json.loads((directory / _COUNTS).read_text(encoding="utf-8"))
    return counts


def _publish_dir(tmp: Path, final: Path) -> None:
    """Rename a finished task directory into place; a twin that finished first wins."""
    try:
        tmp.rename(final)
    except OSError:
        if not (final / _COUNTS).is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
