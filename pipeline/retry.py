"""``laionface retry``: fetch the samples that failed with given reasons again, and recompute
what depends on them, and only that.

1. The run's config: ``--config``, or the one in ``run.json`` (each stage's section as the
   invocation that wrote its done markers saw it). Overrides may only touch ``download``,
   ``cluster`` and ``runner``: anything else would change the fingerprints of shards the retry
   does not touch. Everything after download must be up to date under it, so that what the
   retry recomputes is exactly what the retried samples change.
2. The selected samples (``stages.retry_reasons``) are fetched again, one Dask task per download
   shard holding any (``stages.download_retry``), which folds them into the shard and deletes
   the done markers downstream of a shard it changed.
3. The runner recomputes the missing markers, make-like, one segment of stages at a time up to
   each barrier stage: a barrier (dedup) decides over every shard, so when its new decision
   changes the manifest of a shard the retry did not touch (a recovered sample now wins a
   duplicate group over a sample of another shard), that shard is recomputed after it too.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from manifests import schema as S
from manifests.layout import RunLayout
from manifests.run_record import producing_record, read_run_history
from pipeline.cluster import open_client
from pipeline.config import (
    ConfigError,
    RunConfigBase,
    apply_overrides,
    load_config,
    validate_config,
)
from pipeline.fingerprints import Action
from pipeline.pools import task_resources
from pipeline.run_plan import RunPlanner
from pipeline.runner import run_pipeline
from pipeline.status import RunDirError
from stages import STAGES, build_stage
from stages.base import RunContext, Stage
from stages.download import DownloadConfig
from stages.download_errors import NAME as DOWNLOAD
from stages.download_retry import ShardRetry, download_reasons, retry_shard, select_failed
from stages.retry_reasons import ReasonSelector

# Config sections a retry may override: how to download, and where and how to run.
RETRY_SECTIONS = (DOWNLOAD, "cluster", "runner")


@dataclass(frozen=True)
class ReasonTally:
    """Per reason before the retry: samples retried, those that downloaded, and the reasons
    of those still failing."""

    retried: int
    recovered: int
    still_failing: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RetryResult:
    """What a retry did (with ``dry_run``, what it would fetch: nothing recovered or run)."""

    reasons: dict[str, ReasonTally]
    retried: dict[int, tuple[str, ...]]  # download shard -> the sample_ids fetched again
    recovered: tuple[str, ...]
    changed: tuple[int, ...]  # download shards whose manifest or tar the retry rewrote
    # stage -> {"run": [shards], "re-decide": [shards]}: what the runner recomputed after it
    actions: dict[str, dict[str, list[int]]]
    ok: bool
    dry_run: bool


def retry_failed(
    run_dir: Path,
    reasons: Sequence[str],
    config_path: Path | None = None,
    overrides: Sequence[str] = (),
    dry_run: bool = False,
) -> RetryResult:
    """Fetch the samples of ``run_dir`` whose download failed with one of ``reasons`` again
    and recompute what depends on them (see the module docstring)."""
    config = retry_config(Path(run_dir), config_path, overrides)
    layout = RunLayout(config.run_dir)
    shards = layout.done_shards(DOWNLOAD)
    present: Counter[str] = Counter()
    for shard in shards:
        present.update(download_reasons(layout, shard))
    selector = ReasonSelector.parse(reasons, present)
    if DOWNLOAD not in config.stages:
        raise ConfigError(f"retry: stage {DOWNLOAD!r} is not in this config's {config.stages}")
    stages = [build_stage(n, config.stage_config(n)) for n in config.stages]
    downstream = stages[config.stages.index(DOWNLOAD) + 1 :]
    _check_up_to_date(config, stages, downstream)
    selected = {s: select_failed(layout, s, selector) for s in shards}
    selected = {s: rows for s, rows in selected.items() if rows.num_rows}
    if dry_run or not selected:
        before = Counter(r for rows in selected.values() for r in rows[S.REJECT_REASON].to_pylist())
        tally = {why: ReasonTally(n, 0) for why, n in sorted(before.items())}
        ids = {s: tuple(rows[S.SAMPLE_ID].to_pylist()) for s, rows in selected.items()}
        return RetryResult(tally, ids, (), (), {}, True, dry_run)
    done = _fetch_again(config, selected, [(s.name, s.barrier) for s in downstream])
    changed = tuple(r.shard for r in done if r.changed)
    actions, ok = _recompute(config, downstream, set(changed)) if changed else ({}, True)
    return _result(done, changed, actions, ok)


def retry_config(
    run_dir: Path, config_path: Path | None, overrides: Sequence[str]
) -> RunConfigBase:
    """The config the retry runs under: ``config_path``'s, or the run's own from run.json."""
    bad = [o for o in overrides if o.split(".", 1)[0].split("=", 1)[0] not in RETRY_SECTIONS]
    if bad:
        raise ConfigError(
            f"retry --set may only change {', '.join(RETRY_SECTIONS)} settings, not {bad}: "
            "other sections change shards the retry does not fetch (use laionface run)"
        )
    pinned = [*overrides, f"run_dir={run_dir}"]
    if config_path is not None:
        return load_config(config_path, pinned)
    layout = RunLayout(run_dir)
    latest = read_run_history(layout).latest
    if latest is None:
        raise RunDirError(f"{run_dir} is not a run directory (no run.json); pass --config")
    data = dict(latest.config)
    for stage in data.get("stages") or list(STAGES):
        record = producing_record(layout, stage)
        if record is not None and stage in record.config:
            data[stage] = record.config[stage]
    return validate_config(apply_overrides(data, pinned), str(layout.run_json))


def _check_up_to_date(config: RunConfigBase, stages: list[Stage], downstream: list[Stage]) -> None:
    """Refuse to start when a stage after download is not up to date under ``config``: the
    runner would recompute those shards too, whether the retry changes them or not."""
    names = [s.name for s in downstream]
    planner = RunPlanner(stages, names, RunContext(config.run_dir.resolve()))
    stale = [planner.plan(n) for n in names]
    stale = [p for p in stale if p.shards(Action.RUN) or p.shards(Action.REDECIDE)]
    if stale:
        raise ConfigError(
            f"retry: the run is not up to date after {DOWNLOAD} ("
            + "; ".join(p.summary() for p in stale)
            + "): complete it with laionface run first, or pass the --config it ran with"
        )


def _fetch_again(
    config: RunConfigBase, selected: dict[int, pa.Table], downstream: list[tuple[str, bool]]
) -> list[ShardRetry]:
    """One task per download shard, on the workers the download stage runs on."""
    section = config.stage_config(DOWNLOAD)
    assert isinstance(section, DownloadConfig)
    stage = build_stage(DOWNLOAD, section)
    resources = task_resources(config.cluster, DOWNLOAD, stage.resources)
    ctx = RunContext(config.run_dir.resolve())
    tag = uuid.uuid4().hex[:8]
    with open_client(config.cluster) as client:
        futures = [
            client.submit(
                retry_shard,
                section,
                ctx,
                shard,
                rows,
                downstream,
                key=f"retry-{DOWNLOAD}-{shard:05d}-{tag}",
                retries=config.runner.retries,
                resources=resources,
                pure=False,
            )
            for shard, rows in sorted(selected.items())
        ]
        done: list[ShardRetry] = client.gather(futures)
    return done


def _segments(stages: list[Stage]) -> list[list[Stage]]:
    """``stages`` cut after each barrier stage."""
    out: list[list[Stage]] = [[]]
    for stage in stages:
        out[-1].append(stage)
        if stage.barrier:
            out.append([])
    return [s for s in out if s]


def _recompute(
    config: RunConfigBase, downstream: list[Stage], affected: set[int]
) -> tuple[dict[str, dict[str, list[int]]], bool]:
    """Run the stages after download again where their markers were deleted (module
    docstring, step 3); the runner's actions of every segment, and whether all went well."""
    layout = RunLayout(config.run_dir)
    actions: dict[str, dict[str, list[int]]] = {}
    ok = True
    segments = _segments(downstream)
    for i, segment in enumerate(segments):
        later = [s.name for seg in segments[i + 1 :] for s in seg if not s.barrier]
        barrier = segment[-1].name if segment[-1].barrier and later else None
        before = _digests(layout, barrier) if barrier else {}
        result = run_pipeline(config, [s.name for s in segment])
        actions.update(result.actions)
        ok = ok and result.ok
        if barrier is None:
            continue
        after = _digests(layout, barrier)
        moved = {s for s, d in after.items() if before.get(s) != d} - affected
        for stage in later:
            for shard in moved:
                layout.done_marker(stage, shard).unlink(missing_ok=True)
        affected |= moved
    return actions, ok


def _digests(layout: RunLayout, stage: str) -> dict[int, str]:
    """A digest of the values of each shard manifest of ``stage`` (not of its file bytes)."""
    out: dict[int, str] = {}
    for path in sorted(layout.stage_dir(stage).glob("[0-9]*.parquet")):
        table = pq.read_table(path)
        keep = [c for c in table.column_names if c not in S.VOLATILE_COLUMNS]
        values = repr([table[c].to_pylist() for c in keep]).encode("utf-8")
        out[int(path.stem)] = hashlib.sha256(values).hexdigest()
    return out


def _result(
    done: list[ShardRetry],
    changed: tuple[int, ...],
    actions: dict[str, dict[str, list[int]]],
    ok: bool,
) -> RetryResult:
    retried: Counter[str] = Counter()
    recovered: Counter[str] = Counter()
    failing: dict[str, Counter[str]] = {}
    for sample in (s for r in done for s in r.samples):
        retried[sample.before] += 1
        if sample.after is None:
            recovered[sample.before] += 1
        else:
            failing.setdefault(sample.before, Counter())[sample.after] += 1
    tally = {
        why: ReasonTally(n, recovered[why], dict(sorted(failing.get(why, Counter()).items())))
        for why, n in sorted(retried.items())
    }
    return RetryResult(
        reasons=tally,
        retried={r.shard: tuple(s.sample_id for s in r.samples) for r in done},
        recovered=tuple(sorted(s.sample_id for r in done for s in r.samples if s.after is None)),
        changed=changed,
        actions=actions,
        ok=ok,
        dry_run=False,
    )
