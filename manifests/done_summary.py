"""One stage's done shards and merged report, cached so reading them stays cheap at scale.

Reading every done marker of a 40,000-shard stage costs seconds; ``stage_summary`` keeps a
summary beside the markers, ``RUN/<stage>/_done_summary.bin`` (not inside ``_done/``: writing
there would change the very directory mtime it is validated against), and rereads only what
changed since it was built:

- the summary holds the merged report of the *settled* markers (modified more than
  ``SETTLE_NS`` before the scan that read them), each with its signature (inode, size, mtime);
- when the ``_done`` directory's (inode, mtime) is the one recorded, nothing was added,
  removed or replaced since: markers are only ever written by temp file + rename inside that
  directory (``manifests.io.write_done``) or deleted, and each of those updates its mtime.
  The directory's mtime is recorded only when it was itself settled at scan time, so a change
  within the same timestamp tick as the scan cannot hide behind an equal mtime;
- otherwise the directory is listed and every marker stat'ed: a summarized marker that is gone
  or has another signature (deleted, rewritten) discards the summary and all markers are read
  again; new markers are read and merged; markers still unsettled are merged into the answer
  but left out of the stored summary, so they are read again next time.

A summary that cannot be written (a read-only run directory) is simply not stored. Markers are
read through ``manifests.io.read_done`` only; this module never parses marker files itself.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from manifests.io import read_done
from manifests.layout import RunLayout
from manifests.report import ShardReport, merge_reports

SUMMARY_NAME = "_done_summary.bin"
SUMMARY_FORMAT = 2
# array typecodes of the stored signature columns: shard, st_ino (unsigned), st_size, st_mtime_ns
_SIG_CODES = ("q", "Q", "q", "q")
# Markers younger than this at scan time may still share a timestamp tick with a later change
# (Linux stamps files from a coarse clock, ~1-10 ms; 2 s also covers FAT-like granularity).
SETTLE_NS = 2_000_000_000

Signature = tuple[int, int, int]  # (st_ino, st_size, st_mtime_ns)


@dataclass(frozen=True)
class _Summary:
    """What is stored: settled markers' signatures, their merged report, the directory key."""

    stage: str
    markers: dict[int, Signature]
    report: ShardReport
    dir_key: tuple[int, int] | None  # (st_ino, st_mtime_ns) of _done, when settled

    @classmethod
    def empty(cls, stage: str) -> _Summary:
        return cls(stage, {}, ShardReport.empty(stage), None)


def summary_path(layout: RunLayout, stage: str) -> Path:
    return layout.stage_dir(stage) / SUMMARY_NAME


def stage_summary(layout: RunLayout, stage: str) -> tuple[frozenset[int], ShardReport]:
    """The done shards of ``stage`` and the merged report of their markers.

    Equal to reading every marker with ``read_stage_reports`` and merging, except that
    ``errors`` are listed in the order their markers were first summarized.
    """
    done_dir = layout.done_marker(stage, 0).parent
    try:
        dir_stat = os.stat(done_dir)
    except FileNotFoundError:
        return frozenset(), ShardReport.empty(stage)
    dir_key = (dir_stat.st_ino, dir_stat.st_mtime_ns)
    head = _load(layout, stage, with_markers=False)  # report and shards, no signatures
    if head is not None and head.dir_key == dir_key:
        return frozenset(head.report.shards), head.report
    settled_before = time.time_ns() - SETTLE_NS
    on_disk = _scan(done_dir)
    stored = _load(layout, stage, with_markers=True)
    if stored is None or not stored.markers.items() <= on_disk.items():
        stored = _Summary.empty(stage)  # a summarized marker was deleted or rewritten
    new = _read_new(layout, stage, on_disk, set(stored.markers))
    settled = {s: r for s, r in new.items() if on_disk[s][2] < settled_before}
    unsettled = {s: r for s, r in new.items() if s not in settled}
    keep = _Summary(
        stage,
        markers={**stored.markers, **{s: on_disk[s] for s in settled}},
        report=merge_reports(stage, [stored.report, *settled.values()]),
        dir_key=dir_key if dir_stat.st_mtime_ns < settled_before and not unsettled else None,
    )
    # Rewriting a summary that only lost its directory key would buy nothing: without the
    # key, the next call lists the directory either way.
    if keep.markers != stored.markers or keep.dir_key not in (None, stored.dir_key):
        _store(layout, keep)
    answer = merge_reports(stage, [keep.report, *unsettled.values()])
    return frozenset(keep.markers) | unsettled.keys(), answer


def _scan(done_dir: Path) -> dict[int, Signature]:
    """Signature of every marker ``RunLayout.done_shards`` would list (``[0-9]*.json``)."""
    found: dict[int, Signature] = {}
    with os.scandir(done_dir) as entries:
        for entry in entries:
            name = entry.name
            if not (name.endswith(".json") and name[0] in "0123456789"):
                continue
            try:
                shard = int(name[: -len(".json")])
                st = entry.stat()
            except (ValueError, FileNotFoundError):  # not a shard id, or deleted meanwhile
                continue
            found[shard] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return found


def _read_new(
    layout: RunLayout, stage: str, on_disk: Mapping[int, Signature], known: set[int]
) -> dict[int, ShardReport]:
    """Reports of the markers not summarized yet (one deleted since the scan is skipped)."""
    reports = {}
    for shard in sorted(set(on_disk) - known):
        report = read_done(layout, stage, shard)
        if report is not None:
            reports[shard] = report
    return reports


def _load(layout: RunLayout, stage: str, with_markers: bool) -> _Summary | None:
    """The stored summary (its markers only ``with_markers``: the valid-summary path reads the
    header line alone), or None when absent, unreadable, or of another format or stage.

    The file is one JSON header line (report, done shards as ranges, directory key), then the
    markers' signatures as four native-endian 64-bit columns: shard, inode, size, mtime.
    """
    try:
        with summary_path(layout, stage).open("rb") as f:
            head: dict[str, Any] = json.loads(f.readline())
            if (head["format"], head["stage"], head["byteorder"]) != (
                SUMMARY_FORMAT,
                stage,
                sys.byteorder,
            ):
                return None
            shards = [s for lo, hi in head["shards"] for s in range(lo, hi + 1)]
            markers = _unpack(f.read(), shards) if with_markers else {}
        report = ShardReport.from_json(json.dumps(head["report"]))
        key = head["dir_key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    dir_key = (int(key[0]), int(key[1])) if key is not None else None
    return _Summary(stage, markers, replace(report, shards=tuple(shards)), dir_key)


def _unpack(blob: bytes, shards: list[int]) -> dict[int, Signature]:
    columns = [array(code) for code in _SIG_CODES]
    n = len(shards)
    if len(blob) != 8 * len(columns) * n:
        raise ValueError("summary signatures do not match its shards")
    for i, column in enumerate(columns):
        column.frombytes(blob[8 * n * i : 8 * n * (i + 1)])
    if columns[0].tolist() != shards:
        raise ValueError("summary signatures do not match its shards")
    return dict(zip(shards, zip(columns[1], columns[2], columns[3], strict=True), strict=True))


def _store(layout: RunLayout, summary: _Summary) -> None:
    """Write the summary atomically; a run directory we may not write to keeps none."""
    shards = sorted(summary.markers)
    head = {
        "format": SUMMARY_FORMAT,
        "stage": summary.stage,
        "byteorder": sys.byteorder,
        "dir_key": list(summary.dir_key) if summary.dir_key is not None else None,
        "shards": _ranges(shards),
        "report": json.loads(replace(summary.report, shards=()).to_json()),
    }
    sigs = [summary.markers[s] for s in shards]
    columns = [array(_SIG_CODES[0], shards)]
    columns += [array(code, (sig[i] for sig in sigs)) for i, code in enumerate(_SIG_CODES[1:])]
    body = json.dumps(head, separators=(",", ":")).encode() + b"\n"
    path = summary_path(layout, summary.stage)
    # Like manifests.io.write_bytes_atomic, but never creates the stage directory: one removed
    # while we scanned (a stage reset) must stay removed.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(body + b"".join(c.tobytes() for c in columns))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


def _ranges(sorted_ids: list[int]) -> list[list[int]]:
    """[[first, last], ...] of the runs of consecutive ids: 40,000 done shards are one pair."""
    runs: list[list[int]] = []
    for i in sorted_ids:
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return runs
