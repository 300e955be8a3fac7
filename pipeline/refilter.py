"""``laionface refilter``: re-decide the filter stage from stored scores, without any model.

Filters store raw scores and decide with a pure function (DESIGN.md §3), so new thresholds
(``--set filter.face_size.min_px=160``) give new verdicts from the manifests alone. The result
is written as a new decision set, ``RUN/filter/_decisions/<name>/<shard>.parquet`` (sample_id,
every ``<filter>_keep``, every tag such as ``hands_subset``, keep, reject_reason) beside the
config that produced it; the stage's own manifests are left as they are.

Under the cascade (``filter.score_rejected``) some filters never scored some rows; the
manifest's ``not_scored`` lists them. A row that new thresholds let reach such a filter is not
kept on the missing scores: it gets ``"<filter>:not_scored"`` (``decide_all``), and a warning
says that ``laionface run`` with the same settings scores those rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from filters.tags import decide_tags
from manifests import schema as S
from manifests.io import write_table_atomic, write_text_atomic
from manifests.layout import RunLayout
from manifests.run_record import producing_record
from pipeline.config import ConfigError, apply_overrides, validate_config
from stages.filter import NAME as FILTER
from stages.filter import FilterStage, FilterStageBase

log = logging.getLogger(__name__)
_NOT_SCORED = ":" + S.NOT_SCORED_WHY


@dataclass(frozen=True)
class RefilterResult:
    """Funnels of the filter stage before (as run) and after (new thresholds)."""

    name: str
    path: Path
    rows: int
    seconds: float
    before: Counter[str]
    after: Counter[str]


def refilter(run_dir: Path, overrides: Sequence[str], name: str | None = None) -> RefilterResult:
    """Recompute the filter verdicts of every done shard under ``overrides``."""
    layout = RunLayout(Path(run_dir))
    section = _new_filter_section(layout, overrides)
    stage = FilterStage(section)
    name = name or "set-" + hashlib.sha1("\n".join(sorted(overrides)).encode()).hexdigest()[:10]
    out_dir = layout.stage_dir(FILTER) / "_decisions" / name
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    rows = 0
    t0 = time.perf_counter()
    for shard in layout.done_shards(FILTER):
        try:
            stored = stage.stored_decision(layout, shard)
        except ValueError as err:
            raise ConfigError(f"refilter: {err}") from None
        table, entered, new = stored.manifest, stored.upstream.keep, stored.after()
        before.update(_dropped_here(entered, table[S.REJECT_REASON].to_pylist()))
        after.update(_dropped_here(entered, new.reasons))
        columns = {S.SAMPLE_ID: table[S.SAMPLE_ID], **stored.verdict.columns(), **new.columns()}
        # Tags (e.g. hands_subset) are decided from the same stored scores.
        tags = decide_tags(stage.filters, stored.scores)
        columns.update({c: m.tolist() for c, m in tags.items()})
        write_table_atomic(pa.table(columns), out_dir / f"{shard:05d}.parquet")
        rows += table.num_rows
    write_text_atomic(json.dumps({"overrides": list(overrides)}, indent=2), out_dir / "config.json")
    unscored = sum(n for why, n in after.items() if why.endswith(_NOT_SCORED))
    if unscored:
        log.warning(
            "refilter: %d rows reach filters that never scored them (reasons '<filter>%s'); "
            "`laionface run` with these settings scores them",
            unscored,
            _NOT_SCORED,
        )
    return RefilterResult(name, out_dir, rows, time.perf_counter() - t0, before, after)


def _new_filter_section(layout: RunLayout, overrides: Sequence[str]) -> FilterStageBase:
    record = producing_record(layout, FILTER)
    if record is None:
        raise ConfigError(f"{layout.root} is not a run directory (no run.json)")
    bad = [o for o in overrides if not o.startswith(f"{FILTER}.")]
    if bad:
        raise ConfigError(f"refilter only re-decides {FILTER}.* settings, not {bad}")
    validated = validate_config(
        apply_overrides(record.config, overrides), str(layout.run_json), check_model_paths=False
    )
    section = validated.stage_config(FILTER)
    assert isinstance(section, FilterStageBase)
    return section


def _dropped_here(entered: np.ndarray, reasons: Sequence[str | None]) -> Counter[str]:
    """Reasons of rows that entered the stage and were dropped, plus kept rows under 'kept'."""
    counts: Counter[str] = Counter()
    for came, why in zip(entered, reasons, strict=True):
        if came:
            counts[why or "kept"] += 1
    return counts


def read_decisions(path: Path) -> pa.Table:
    """All shards of a decision set, in shard order."""
    return pa.concat_tables(pq.read_table(p) for p in sorted(path.glob("[0-9]*.parquet")))
