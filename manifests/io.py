"""Per-stage Parquet manifests: atomic writes, reads and shard-local joins on sample_id."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from manifests import schema as S
from manifests.layout import RunLayout
from manifests.report import ShardReport

# Write failures caused by where the output goes, not by what is written, and what fixes them.
OUTPUT_FIXES: dict[int, str] = {
    errno.ENOSPC: "free space on its filesystem",
    errno.EDQUOT: "free space or raise the disk quota",
    errno.EROFS: "remount its filesystem read-write",
    errno.EACCES: "give this user write permission to it",
    errno.EPERM: "give this user write permission to it",
}
# Those only a write can raise: from any file operation they still mean the output's disk.
WRITE_ONLY_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class OutputNotWritable(OSError, RuntimeError):
    """A write failed because of its destination: disk full, read-only, no permission.

    Its message is one line naming the path, the reason and the fix. It stays an ``OSError``
    (same errno, ``filename`` the output path) and is a ``RuntimeError`` too, which the CLI
    reports in one line, like a failed shard. Build it with ``output_error``.
    """

    def __str__(self) -> str:
        code = self.errno or 0
        return (
            f"cannot write {self.filename}: {os.strerror(code)} "
            f"({errno.errorcode.get(code, code)}); {OUTPUT_FIXES.get(code, 'make it writable')}, "
            "then run again: finished shards are kept"
        )


def output_error(err: OSError, path: Path | str) -> OSError:
    """``err`` as an OutputNotWritable naming ``path`` when its errno is in OUTPUT_FIXES;
    ``err`` itself otherwise."""
    if isinstance(err, OutputNotWritable) or err.errno not in OUTPUT_FIXES:
        return err
    return OutputNotWritable(err.errno, os.strerror(err.errno), str(path))


@contextmanager
def output_errors(path: Path | str) -> Iterator[None]:
    """Re-raise a disk error (OUTPUT_FIXES) of the block, which writes ``path``, as an
    OutputNotWritable naming ``path``; other errors pass unchanged."""
    try:
        yield
    except OSError as err:
        converted = output_error(err, path)
        if converted is err:
            raise
        raise converted from err


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temp path beside ``path`` for the block to write; renamed to ``path`` when the block
    ends, so readers see the old file or the whole new one, and removed when it fails (a
    full disk leaves no half-written temp behind). Disk errors become OutputNotWritable."""
    with output_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # Same directory, so the final os.replace is an atomic rename on one filesystem.
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            yield tmp
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


def discard_temps(directory: Path, stem: str = "*") -> None:
    """Remove the temp files that interrupted atomic writes of ``directory/<stem>.*`` left:
    a killed process reaches neither the rename nor the removal of its temp file."""
    for tmp in directory.glob(f".{stem}.*.tmp"):
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(data: bytes, path: Path) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(text: str, path: Path) -> None:
    write_bytes_atomic(text.encode("utf-8"), path)


def write_table_atomic(table: pa.Table, path: Path) -> None:
    """Write a Parquet manifest atomically (zstd: small and fast to re-read)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


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
