"""The one Dask task of the pipeline: run one (stage, shard), idempotently.

It discards what earlier attempts left (scratch space, temp files of interrupted atomic
writes), logs to the shard's own log file, calls ``Stage.run_shard`` and writes the done marker
(holding the report) last, so a shard is either done with its manifest in place or will be
recomputed from scratch.

Each attempt gets scratch space of its own, ``RUN/<stage>/_tmp/<shard>/<attempt>/``: when
Dask reruns the task of a killed worker, a subprocess the dead worker had started (the
download's img2dataset) may still be running, and must not write into, or delete from, the new
attempt's files. Disk errors (full, read-only, no permission) end the attempt with a one-line
``OutputNotWritable``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from manifests.io import (
    WRITE_ONLY_ERRNOS,
    DoneMarker,
    OutputNotWritable,
    discard_temps,
    output_error,
    read_marker,
    write_done,
)
from manifests.layout import RunLayout
from manifests.report import ShardReport
from stages.base import Redecider, RunContext, Stage


class _ThisThread(logging.Filter):
    """Keeps only records of one thread: a worker runs several shards in parallel threads."""

    def __init__(self) -> None:
        super().__init__()
        self._ident = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self._ident


@contextmanager
def shard_log(path: Path) -> Iterator[logging.Logger]:
    """Send this thread's log records to ``path`` while the shard runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_ThisThread())
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(min(previous_level or logging.INFO, logging.INFO))
    try:
        yield logging.getLogger("laionface.shard")
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        # On a full disk the final flush fails too: that error must not replace the one that
        # ended the shard (the log is not an output; logging already reported its failure).
        with contextlib.suppress(OSError):
            handler.close()


@dataclass(frozen=True)
class AttemptLayout(RunLayout):
    """The run layout as one attempt at a shard sees it: its scratch space is its own."""

    attempt: str = ""

    def shard_tmp(self, stage: str, shard: int) -> Path:
        return super().shard_tmp(stage, shard) / self.attempt


@dataclass(frozen=True)
class AttemptContext(RunContext):
    """The run context of one attempt (see the module docstring)."""

    attempt: str = ""

    @property
    def layout(self) -> RunLayout:
        return AttemptLayout(self.run_dir, self.attempt)


def run_shard_task(
    stage: Stage, shard: int, ctx: RunContext, stamp: DoneMarker, redecide: bool, *upstream: object
) -> ShardReport:
    """Run ``stage`` on ``shard`` unless its marker already carries ``stamp``'s fingerprint.

    ``stamp`` holds the fingerprints and run id the new marker gets; with ``redecide`` the
    stage only re-applies its thresholds (``Redecider``). ``upstream`` only orders tasks.
    """
    layout = ctx.layout
    done = read_marker(layout, stage.name, shard)
    if done is not None and done.fingerprint == stamp.fingerprint:
        return done.report
    scratch = layout.shard_tmp(stage.name, shard)  # every attempt's scratch space
    try:
        shutil.rmtree(scratch, ignore_errors=True)
        discard_temps(layout.stage_dir(stage.name), f"{shard:05d}")
        discard_temps(layout.done_marker(stage.name, shard).parent, f"{shard:05d}")
        attempt = AttemptContext(ctx.run_dir, uuid.uuid4().hex)
        report = _attempt(stage, shard, attempt, stamp, redecide)
    except OutputNotWritable:
        raise
    except OSError as err:  # e.g. the log or scratch space on a full disk
        if err.errno not in WRITE_ONLY_ERRNOS:
            raise
        raise output_error(err, err.filename or layout.stage_dir(stage.name)) from err
    shutil.rmtree(scratch, ignore_errors=True)
    return report


def _attempt(
    stage: Stage, shard: int, ctx: RunContext, stamp: DoneMarker, redecide: bool
) -> ShardReport:
    layout = ctx.layout
    with shard_log(layout.shard_log(stage.name, shard)) as log:
        log.info("start %s shard %05d%s", stage.name, shard, " (re-decide)" if redecide else "")
        t0 = time.perf_counter()
        try:
            report = _work(stage, shard, ctx, redecide)
        except Exception:
            log.exception("%s shard %05d failed", stage.name, shard)
            raise
        seconds = {**report.seconds, "total": time.perf_counter() - t0}
        report = dataclasses.replace(report, seconds=seconds)
        write_done(layout, report, stamp)
        log.info("done: in=%d out=%d dropped=%s", report.n_in, report.n_out, report.dropped)
    return report


def _work(stage: Stage, shard: int, ctx: RunContext, redecide: bool) -> ShardReport:
    if redecide and isinstance(stage, Redecider):
        return stage.redecide_shard(shard, ctx)
    return stage.run_shard(shard, ctx)
