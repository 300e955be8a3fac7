"""The Dask runner: one task per (stage, shard), chained per shard as futures.

Shard 7 of ``download`` depends only on shard 7 of ``candidates``, so later stages start as
soon as their shard's input exists. A barrier stage waits for every upstream shard, then its
``prepare`` runs on the driver. Done shards are skipped; failing shards are retried by Dask,
then ``runner.on_shard_error`` decides: ``fail`` stops the run with a one-line error, ``skip``
records the shard (and everything downstream of it) as skipped and goes on.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from distributed import Client, Future, as_completed

from manifests.io import read_done, read_stage_reports, write_text_atomic
from manifests.layout import RunLayout
from manifests.report import ShardReport, merge_reports
from pipeline.cluster import open_client
from pipeline.config import ConfigError, RunConfigBase
from pipeline.progress import ProgressBoard
from pipeline.run_info import write_run_info
from pipeline.shard_task import run_shard_task
from stages import build_stage
from stages.base import RunContext, Stage

log = logging.getLogger(__name__)


class ShardFailed(RuntimeError):
    """A shard failed after its retries while ``on_shard_error`` is ``fail``."""


@dataclass
class RunResult:
    """What a run did: per stage, the merged report of all done shards and the skipped ones."""

    reports: dict[str, ShardReport] = field(default_factory=dict)
    skipped: dict[str, dict[int, str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.skipped.values())


class _Tracker:
    """Follows submitted futures on the driver: progress, failures, skips."""

    def __init__(self, client: Client, board: ProgressBoard, on_error: str, retries: int) -> None:
        self.client = client
        self.board = board
        self.on_error = on_error
        self.retries = retries
        self.futures: dict[str, dict[int, Future]] = {}
        self.skipped: dict[str, dict[int, str]] = {}
        self._pending: dict[object, tuple[str, int]] = {}
        self._completed = as_completed()
        self._upstream: dict[str, str | None] = {}

    def add(self, stage: str, shard: int, future: Future, upstream: str | None) -> None:
        self.futures.setdefault(stage, {})[shard] = future
        self._upstream[stage] = upstream
        self._pending[future.key] = (stage, shard)
        self._completed.add(future)

    def _failure(self, stage: str, shard: int, future: Future) -> str:
        """Why a shard failed: its own error, or its upstream shard's (Dask propagates it)."""
        up = self._upstream.get(stage)
        if up is not None and shard in self.skipped.get(up, {}):
            return f"{stage} shard {shard:05d} not run: upstream {up} shard {shard:05d} failed"
        exc = future.exception()
        return (
            f"{stage} shard {shard:05d} failed after {self.retries} retries: "
            f"{type(exc).__name__}: {exc}"
        )

    def skip(self, stage: str, shard: int, why: str) -> None:
        self.skipped.setdefault(stage, {})[shard] = why
        self.board.skip(stage)

    def wait(self, futures: Iterable[Future]) -> None:
        """Process completions until every future in ``futures`` has finished."""
        targets = {f.key for f in futures}
        while targets & self._pending.keys():
            future = next(self._completed)
            self._finish(future)

    def _finish(self, future: Future) -> None:
        stage, shard = self._pending.pop(future.key)
        if future.status == "finished":
            self.board.add(stage, future.result())
            return
        message = self._failure(stage, shard, future)
        if self.on_error == "fail":
            self.client.cancel(list(f for s in self.futures.values() for f in s.values()))
            raise ShardFailed(message)
        log.warning("%s (skipped)", message)
        self.skip(stage, shard, message)


def run_pipeline(config: RunConfigBase, stages: list[str] | None = None) -> RunResult:
    """Run the selected stages (default: the config's) to completion on the configured cluster."""
    unknown = sorted(set(stages or ()) - set(config.stages))
    if unknown:
        raise ConfigError(f"--stages {unknown}: not in this config's stages {config.stages}")
    names = [s for s in config.stages if stages is None or s in stages]
    layout = RunLayout(config.run_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    write_run_info(config)
    ctx = RunContext(config.run_dir.resolve())
    with (
        open_client(config.cluster) as client,
        ProgressBoard(names, config.runner.progress) as board,
    ):
        tracker = _Tracker(client, board, config.runner.on_shard_error, config.runner.retries)
        token = uuid.uuid4().hex[:8]
        for name in names:
            stage = build_stage(name, config.stage_config(name))
            _schedule_stage(stage, ctx, tracker, config.runner.retries, token)
        tracker.wait(f for per_stage in tracker.futures.values() for f in per_stage.values())
    return _write_run_report(layout, names, tracker.skipped)


def _schedule_stage(
    stage: Stage, ctx: RunContext, tracker: _Tracker, retries: int, token: str
) -> None:
    """Submit the stage's pending shards, each after its upstream shard (or, for a barrier
    stage, after all of upstream and ``prepare``)."""
    client = tracker.client
    _check_resources(client, stage)
    upstream = tracker.futures.get(stage.upstream or "", {})
    if stage.barrier:
        tracker.wait(upstream.values())
        _reset_if_stale(stage, ctx, bool(upstream))
        stage.prepare(ctx, client)
    for shard in _submit_order(stage, ctx, tracker.board, upstream):
        # A barrier stage already waited for all of upstream: no per-shard dependency.
        dep = None if stage.barrier else upstream.get(shard)
        why = _blocked(ctx.layout, stage, shard, dep, tracker)
        if why:
            tracker.skip(stage.name, shard, why)
            continue
        future = client.submit(
            run_shard_task,
            stage,
            shard,
            ctx,
            *([dep] if dep is not None else []),
            key=f"{stage.name}-{shard:05d}-{token}",
            retries=retries,
            resources=dict(stage.resources) or None,
            pure=False,
        )
        tracker.add(stage.name, shard, future, stage.upstream)


def _submit_order(
    stage: Stage, ctx: RunContext, board: ProgressBoard, upstream: dict[int, Future]
) -> list[int]:
    """The stage's shards that are not done yet; done ones count towards the progress bar.

    A done shard whose upstream shard is recomputed in this run, or was recomputed after it,
    is stale: its marker is deleted and it runs again (make-like, on done-marker times).
    """
    layout = ctx.layout
    shards = stage.shards(ctx)
    board.set_total(stage.name, len(shards))
    todo = []
    for shard in shards:
        marker = layout.done_marker(stage.name, shard)
        if (
            not stage.barrier
            and marker.is_file()
            and (shard in upstream or _newer(layout, stage.upstream, shard, marker))
        ):
            log.info("%s shard %05d is stale (upstream recomputed): rerunning", stage.name, shard)
            marker.unlink()
        report = read_done(layout, stage.name, shard)
        if report is None:
            todo.append(shard)
        else:
            board.add(stage.name, report)
    return todo


def _newer(layout: RunLayout, upstream: str | None, shard: int, marker: Path) -> bool:
    if upstream is None:
        return False
    theirs = layout.done_marker(upstream, shard)
    return theirs.is_file() and theirs.stat().st_mtime > marker.stat().st_mtime


def _reset_if_stale(stage: Stage, ctx: RunContext, recomputed_upstream: bool) -> None:
    """A barrier stage decides over all shards: any upstream change makes all of it stale."""
    layout = ctx.layout
    markers = [layout.done_marker(stage.name, s) for s in layout.done_shards(stage.name)]
    if stage.upstream is None or not markers:
        return
    oldest = min(m.stat().st_mtime for m in markers)
    newest_upstream = max(
        (layout.done_marker(stage.upstream, s).stat().st_mtime
         for s in layout.done_shards(stage.upstream)),
        default=0.0,
    )  # fmt: skip
    if recomputed_upstream or newest_upstream > oldest:
        log.info("%s is stale (upstream recomputed): recomputing all its shards", stage.name)
        for marker in markers:
            marker.unlink()
        stage.reset(ctx)


def _blocked(
    layout: RunLayout, stage: Stage, shard: int, dep: Future | None, tracker: _Tracker
) -> str | None:
    """Why the shard cannot run now (its upstream shard failed or is missing), or None."""
    up = stage.upstream
    if up is None:
        return None
    if shard in tracker.skipped.get(up, {}):
        return f"{stage.name} shard {shard:05d} not run: upstream {up} shard {shard:05d} failed"
    if dep is None and not layout.done_marker(up, shard).is_file():
        return f"upstream {up} shard {shard:05d} is not done: run stage {up!r}"
    return None


def _check_resources(client: Client, stage: Stage) -> None:
    """Refuse to queue tasks no worker can run (they would wait forever)."""
    needed = dict(stage.resources)
    if not needed:
        return
    workers = client.scheduler_info().get("workers", {}).values()
    for worker in workers:
        have = worker.get("resources", {})
        if all(have.get(k, 0) >= v for k, v in needed.items()):
            return
    raise ShardFailed(f"stage {stage.name} needs worker resources {needed}; no worker has them")


def _write_run_report(
    layout: RunLayout, names: list[str], skipped: dict[str, dict[int, str]]
) -> RunResult:
    result = RunResult(skipped={k: v for k, v in skipped.items() if v})
    for name in names:
        result.reports[name] = merge_reports(name, read_stage_reports(layout, name))
    body = {
        name: {
            "report": json.loads(report.to_json()),
            "skipped": {f"{s:05d}": why for s, why in sorted(skipped.get(name, {}).items())},
        }
        for name, report in result.reports.items()
    }
    write_text_atomic(json.dumps(body, indent=2, sort_keys=True), layout.root / "report.json")
    return result
