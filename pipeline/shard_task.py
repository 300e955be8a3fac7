"""The one Dask task of the pipeline: run one (stage, shard), idempotently.

It discards the shard's scratch space from any earlier attempt, logs to the shard's own log
file, calls ``Stage.run_shard`` and writes the done marker (holding the report) last, so a
shard is either done with its manifest in place or will be recomputed from scratch.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from manifests.io import DoneMarker, read_marker, write_done
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
        handler.close()


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
    tmp = layout.shard_tmp(stage.name, shard)
    shutil.rmtree(tmp, ignore_errors=True)
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
    shutil.rmtree(tmp, ignore_errors=True)
    return report


def _work(stage: Stage, shard: int, ctx: RunContext, redecide: bool) -> ShardReport:
    if redecide and isinstance(stage, Redecider):
        return stage.redecide_shard(shard, ctx)
    return stage.run_shard(shard, ctx)
