"""The Dask runner: one task per (stage, shard), chained per shard as futures.

Shard 7 of ``download`` depends only on shard 7 of ``candidates``, so later stages start as
soon as their shard's input exists. A barrier stage waits for every upstream shard, then its
``prepare`` runs on the driver. The stages between two barriers form a segment, submitted one
shard's chain at a time with at most ``runner.shards_in_flight`` chains on the cluster: the
driver (which, on a LocalCluster, also hosts the scheduler) holds that many shards' tasks,
not every task of a 40,000-shard run, and a shard's filter outranks later shards' downloads.
Shards whose done markers carry the fingerprint the config implies are skipped, the others
recomputed (``pipeline.run_plan``); failing shards are retried, then ``runner.on_shard_error``
decides: ``fail`` stops the run with a one-line error, ``skip`` records the shard (and
everything downstream of it) as skipped and goes on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from distributed import Client, Future, as_completed

from manifests.io import (
    DoneMarker,
    output_errors,
    read_done,
    read_stage_reports,
    write_text_atomic,
)
from manifests.layout import RunLayout
from manifests.report import ShardReport, merge_reports
from manifests.run_record import append_record, finish_record
from pipeline.cluster import describe_workers, open_client
from pipeline.config import ConfigError, RunConfigBase
from pipeline.fingerprints import Action
from pipeline.pools import task_resources
from pipeline.progress import ProgressBoard
from pipeline.run_info import new_record, now_iso
from pipeline.run_plan import RunPlanner, StagePlan, check_reads, dry_run
from pipeline.shard_task import run_shard_task
from stages import build_stage
from stages.base import RunContext, ShardPlanMissing, Stage

log = logging.getLogger(__name__)


class ShardFailed(RuntimeError):
    """A shard failed after its retries while ``on_shard_error`` is ``fail``."""


@dataclass
class RunResult:
    """What a run did: per stage, the merged report of all done shards and the skipped ones."""

    reports: dict[str, ShardReport] = field(default_factory=dict)
    skipped: dict[str, dict[int, str]] = field(default_factory=dict)
    # stage -> {"run": [shards], "re-decide": [shards]}: what this invocation recomputed
    actions: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    # one line per worker at the start: its name, resources and visible devices
    workers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(self.skipped.values())


class _Tracker:
    """Follows submitted futures on the driver: progress, failures, skips."""

    def __init__(
        self,
        client: Client,
        board: ProgressBoard,
        on_error: str,
        retries: int,
        stages: list[str],
    ) -> None:
        self.client = client
        self.board = board
        self.on_error = on_error
        self.retries = retries
        self.skipped: dict[str, dict[int, str]] = {}
        # Only unfinished futures are held: a finished one is released, so Dask forgets it.
        self._pending: dict[object, tuple[str, int, Future]] = {}
        self._completed = as_completed()
        self._upstream: dict[str, str | None] = {}
        self.actions: dict[str, StagePlan] = {}
        self.rows: dict[str, int] = {}  # rows of the first stage's shards done so far
        self._first_done = 0
        self._stages = stages

    def add(self, stage: str, shard: int, future: Future, upstream: str | None) -> None:
        self._upstream[stage] = upstream
        self._pending[future.key] = (stage, shard, future)
        self._completed.add(future)

    def in_flight(self) -> int:
        """Shards with an unfinished task."""
        return len({shard for _, shard, _ in self._pending.values()})

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

    def wait_below(self, shards: int) -> None:
        """Process completions until fewer than ``shards`` shards have an unfinished task."""
        while self._pending and self.in_flight() >= shards:
            self._finish(next(self._completed))

    def drain(self) -> None:
        """Process completions until no task is unfinished."""
        self.wait_below(1)

    def done(self, stage: str, report: ShardReport, resumed: bool = False) -> None:
        """Count a done shard; once every shard of the first stage is done, its rows are each
        stage's sample total (every manifest has one row per candidate)."""
        self.board.add(stage, report, resumed=resumed)
        first = next(iter(self.actions), None)
        if stage != first:
            return
        self.rows[stage] = self.rows.get(stage, 0) + report.n_rows
        self._first_done += 1
        if self._first_done == len(self.actions[stage].actions):
            for name in self._stages:
                self.board.set_samples(name, self.rows[stage])

    def _finish(self, future: Future) -> None:
        stage, shard, _ = self._pending.pop(future.key)
        if future.status == "finished":
            self.done(stage, future.result())
            return
        message = self._failure(stage, shard, future)
        if self.on_error == "fail":
            self.client.cancel([f for _, _, f in self._pending.values()])
            raise ShardFailed(message)
        log.warning("%s (skipped)", message)
        self.skip(stage, shard, message)


def _select(config: RunConfigBase, stages: list[str] | None) -> list[str]:
    unknown = sorted(set(stages or ()) - set(config.stages))
    if unknown:
        raise ConfigError(f"--stages {unknown}: not in this config's stages {config.stages}")
    return [s for s in config.stages if stages is None or s in stages]


def _built(config: RunConfigBase) -> list[Stage]:
    return [build_stage(n, config.stage_config(n)) for n in config.stages]


def _planner(config: RunConfigBase, names: list[str]) -> RunPlanner:
    return RunPlanner(_built(config), names, RunContext(config.run_dir.resolve()))


def check_stages(config: RunConfigBase) -> None:
    """What ``run`` holds the config's stages to before planning (``run_plan.check_reads``:
    what each reads and needs), for ``laionface validate``; builds the stages, runs nothing."""
    check_reads(_built(config), config.stages, RunLayout(config.run_dir.resolve()))


def plan_pipeline(config: RunConfigBase, stages: list[str] | None = None) -> list[str]:
    """What ``run_pipeline`` would do, one line per stage; runs and writes nothing."""
    names = _select(config, stages)
    return dry_run(_planner(config, names), names)


def run_pipeline(config: RunConfigBase, stages: list[str] | None = None) -> RunResult:
    """Run the selected stages (default: the config's) to completion on the configured cluster.

    Shards whose fingerprints match the config are skipped; the others run (or are re-decided),
    and so does everything downstream of them. The invocation is recorded in ``run.json``.
    """
    names = _select(config, stages)
    layout = RunLayout(config.run_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    planner = _planner(config, names)
    for line in dry_run(planner, names):  # said before anything starts
        log.info("plan: %s", line)
    record = new_record(config, names, {n: planner.material(n).digest for n in config.stages})
    append_record(layout, record)
    outcome = "failed"
    try:
        result = _run(config, names, planner, record.run_id)
        outcome = "ok" if result.ok else "incomplete"
        return result
    finally:
        finish_record(layout, record.run_id, outcome, now_iso())


# Chains per worker thread when runner.shards_in_flight is unset: a thread finishing a task
# finds the next shard's task queued, while each chain waits on its upstream task.
IN_FLIGHT_PER_THREAD, MIN_IN_FLIGHT = 4, 8


@dataclass(frozen=True)
class _Step:
    """One stage of a segment, planned: what each shard needs, on which workers it runs."""

    stage: Stage
    plan: StagePlan
    resources: dict[str, float] | None


def _segments(stages: list[Stage]) -> list[list[Stage]]:
    """The stages cut before every barrier; within a segment, stages chain per shard."""
    segments: list[list[Stage]] = []
    for stage in stages:
        if stage.barrier or not segments:
            segments.append([])
        segments[-1].append(stage)
    return segments


def _run(config: RunConfigBase, names: list[str], planner: RunPlanner, run_id: str) -> RunResult:
    with (
        open_client(config.cluster) as client,
        ProgressBoard(names, config.runner.progress) as board,
    ):
        tracker = _Tracker(
            client, board, config.runner.on_shard_error, config.runner.retries, names
        )
        workers = describe_workers(client)
        for line in workers:
            log.info("worker %s", line)
        for segment in _segments([planner.stages[name] for name in names]):
            steps = [_plan_step(stage, planner, tracker, config) for stage in segment]
            limit = config.runner.shards_in_flight
            for shard in sorted({s for step in steps for s in step.plan.actions}):
                tracker.wait_below(limit or _default_in_flight(client))
                _submit_chain(steps, shard, planner.ctx, tracker, run_id)
            tracker.drain()  # the next segment starts with a barrier
    return _write_run_report(RunLayout(config.run_dir), names, tracker, workers)


def _default_in_flight(client: Client) -> int:
    """Chains to keep on the cluster: per worker thread it has now (a SLURM cluster grows)."""
    return max(MIN_IN_FLIGHT, IN_FLIGHT_PER_THREAD * sum(client.nthreads().values()))


def _plan_step(
    stage: Stage, planner: RunPlanner, tracker: _Tracker, config: RunConfigBase
) -> _Step:
    """Plan the stage, check some worker can run it, count its up-to-date shards as done."""
    plan = _stage_plan(stage, planner, tracker)
    log.debug("plan: %s", plan.summary())
    tracker.actions[stage.name] = plan
    resources = task_resources(config.cluster, stage.name, stage.resources)
    _check_resources(tracker.client, stage.name, resources)
    tracker.board.set_total(stage.name, len(plan.actions))
    for shard in plan.shards(Action.UP_TO_DATE):
        report = read_done(planner.ctx.layout, stage.name, shard)
        if report is not None:
            tracker.done(stage.name, report, resumed=True)
    return _Step(stage, plan, resources)


def _stage_plan(stage: Stage, planner: RunPlanner, tracker: _Tracker) -> StagePlan:
    """The stage's plan; a barrier stage (whose upstream segment has drained) settles its
    upstream, and a stale one discards its markers and run-wide state before ``prepare``
    recomputes it."""
    if not stage.barrier:
        return planner.plan(stage.name)
    if stage.upstream is not None:
        planner.settle(stage.upstream)
    layout = planner.ctx.layout
    try:
        plan: StagePlan | None = planner.plan(stage.name)
    except ShardPlanMissing:  # the first stage plans the shards in its prepare
        plan = None
    if plan is not None and plan.shards(Action.RUN):
        log.info("%s is stale: recomputing all its shards", stage.name)
        for shard in layout.done_shards(stage.name):
            layout.done_marker(stage.name, shard).unlink()
        stage.reset(planner.ctx)
    stage.prepare(planner.ctx, tracker.client)
    return plan if plan is not None else planner.plan(stage.name)


def _submit_chain(
    steps: list[_Step], shard: int, ctx: RunContext, tracker: _Tracker, run_id: str
) -> None:
    """Submit the shard's task of every step that must run it, each after its upstream
    stage's task of the same shard when that is in this chain (a barrier waited already)."""
    chain: dict[str, Future] = {}
    for step in steps:
        stage = step.stage
        action = step.plan.actions.get(shard)
        if action is None or action is Action.UP_TO_DATE:
            continue
        dep = None if stage.barrier else chain.get(stage.upstream or "")
        why = _blocked(ctx.layout, stage, shard, dep, tracker)
        if why:
            tracker.skip(stage.name, shard, why)
            continue
        future = _submit(stage, shard, action, step.plan, ctx, tracker, run_id, step.resources, dep)
        tracker.add(stage.name, shard, future, stage.upstream)
        chain[stage.name] = future


def _submit(
    stage: Stage,
    shard: int,
    action: Action,
    plan: StagePlan,
    ctx: RunContext,
    tracker: _Tracker,
    run_id: str,
    resources: dict[str, float] | None,
    dep: Future | None,
) -> Future:
    """One shard's task, stamped with the fingerprints its done marker will carry."""
    if action is Action.RUN:
        marker = ctx.layout.done_marker(stage.name, shard)
        with output_errors(marker):  # a read-only run dir: one line naming the fix
            marker.unlink(missing_ok=True)
    expected = plan.expected[shard]
    stamp = DoneMarker(ShardReport.empty(stage.name), expected.full, expected.score, run_id)
    return tracker.client.submit(
        run_shard_task,
        stage,
        shard,
        ctx,
        stamp,
        action is Action.REDECIDE,
        *([dep] if dep is not None else []),
        key=f"{stage.name}-{shard:05d}-{run_id}",
        retries=tracker.retries,
        resources=resources,
        pure=False,
    )


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


def _check_resources(client: Client, stage: str, needed: dict[str, float] | None) -> None:
    """Refuse to queue tasks no worker can run (they would wait forever)."""
    if not needed:
        return
    workers = client.scheduler_info().get("workers", {}).values()
    for worker in workers:
        have = worker.get("resources", {})
        if all(have.get(k, 0) >= v for k, v in needed.items()):
            return
    raise ShardFailed(f"stage {stage} needs worker resources {needed}; no worker has them")


def _write_run_report(
    layout: RunLayout, names: list[str], tracker: _Tracker, workers: list[str]
) -> RunResult:
    skipped = tracker.skipped
    result = RunResult(
        workers=workers,
        skipped={k: v for k, v in skipped.items() if v},
        actions={
            name: {a.value: plan.shards(a) for a in (Action.RUN, Action.REDECIDE)}
            for name, plan in tracker.actions.items()
        },
    )
    for name in names:
        result.reports[name] = merge_reports(name, read_stage_reports(layout, name))
    body = {
        name: {
            "report": json.loads(report.to_json()),
            "skipped": {f"{s:05d}": why for s, why in sorted(skipped.get(name, {}).items())},
            "actions": result.actions.get(name, {}),
        }
        for name, report in result.reports.items()
    }
    write_text_atomic(json.dumps(body, indent=2, sort_keys=True), layout.root / "report.json")
    return result
