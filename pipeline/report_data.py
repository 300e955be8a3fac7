"""The numbers of the audit report, read from a run directory (no models, no images).

Funnel from the done-marker reports; score distributions from the manifests; thresholds from
the resolved config in ``run.json``; per-shard timing from the reports' seconds; caption
lengths of the published samples. ``report_html`` draws them; ``as_json`` is their JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from filters import FILTERS
from filters.declarations import Bound
from filters.declarations import threshold_fields as threshold_fields_of
from manifests import schema as S
from manifests.io import read_stage_reports
from manifests.layout import RunLayout
from manifests.report import ShardReport, merge_reports
from manifests.run_record import producing_record
from stages import STAGES
from stages.names import FILTER, SHARD
from stages.shard.plan import SOURCE_STAGES
from stages.shard.records import score_columns

_BINS = 30  # histogram bins: enough shape for a few thousand samples per score

# candidates.prefilter's thresholds on LAION's own scores, (section, field) -> (score column,
# how the threshold applies); the filters declare theirs (filters.declarations).
PREFILTER_THRESHOLDS: dict[tuple[str, str], tuple[str, Bound]] = {
    ("prefilter", "min_similarity"): (S.SIMILARITY, "min"),
    ("prefilter", "max_punsafe"): (S.PUNSAFE, "max"),
    ("prefilter", "max_pwatermark"): (S.PWATERMARK, "max"),
}


def threshold_fields() -> dict[tuple[str, str], tuple[str, Bound]]:
    """(filter or section type, config field) -> (score column, how the threshold applies):
    what every registered filter declares, plus the prefilter's."""
    return {**threshold_fields_of(FILTERS), **PREFILTER_THRESHOLDS}


@dataclass(frozen=True)
class Threshold:
    column: str
    value: float
    kind: str  # "min", "max" or "abs_max" (applies to |value|)
    source: str  # "<section>.<field>"


@dataclass(frozen=True)
class Histogram:
    column: str
    count: int
    mean: float
    edges: list[float]
    counts: list[int]
    thresholds: list[Threshold] = field(default_factory=list)


@dataclass(frozen=True)
class ShardTiming:
    stage: str
    shard: int
    seconds: float
    rows: int
    rows_per_s: float


@dataclass(frozen=True)
class HandsSummary:
    """The hand-focused subset: hands found by the filter stage and the published tag."""

    images_scored: int  # rows the hands filter scored
    images_with_hands: int
    hands: int
    published: int  # samples in the published indexes
    published_tagged: int  # of those, tagged hands_subset
    sizes: Histogram  # every detected hand's size in px, with the subset's size threshold


@dataclass(frozen=True)
class ReportData:
    run_dir: str
    stages: list[str]
    # Of the invocation that produced the published shards (run.json's record for them).
    config_fingerprint: str | None
    run_id: str | None
    funnel: list[ShardReport]
    histograms: list[Histogram]
    timings: list[ShardTiming]
    caption_words: Histogram | None
    hands: HandsSummary | None = None  # None: no hands filter ran


def stages_of(layout: RunLayout) -> list[str]:
    """Stages with at least one done shard, in pipeline order (shard last)."""
    order = dict.fromkeys([*STAGES, *SOURCE_STAGES, SHARD])
    return [s for s in order if layout.done_shards(s)]


def _walk(node: Any, path: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every mapping in a config with the name it is known by (its ``type`` or its key)."""
    if isinstance(node, dict):
        yield str(node.get("type") or path.rsplit(".", 1)[-1]), path, node
        for key, child in node.items():
            yield from _walk(child, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _walk(child, f"{path}.{i}")


def thresholds(config: dict[str, Any]) -> list[Threshold]:
    """Thresholds found in the config; filters outside the filter ``chain`` (if any) skipped."""
    chain = config.get(FILTER, {}).get("chain") if isinstance(config.get(FILTER), dict) else None
    fields = threshold_fields()
    out = []
    for kind, path, node in _walk(config, ""):
        if chain is not None and path.startswith("filter.") and kind not in chain:
            continue
        for key, value in node.items():
            target = fields.get((kind, key))
            if target is not None and isinstance(value, int | float):
                out.append(Threshold(target[0], float(value), target[1], f"{path}.{key}"))
    return out


def histogram(column: str, values: np.ndarray, marks: list[Threshold]) -> Histogram:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Histogram(column, 0, math.nan, [], [], marks)
    # The range covers the thresholds too, so every marked line falls on the plotted axis.
    limits = [
        v for t in marks for v in ((t.value, -t.value) if t.kind == "abs_max" else (t.value,))
    ]
    low, high = min([values.min(), *limits]), max([values.max(), *limits])
    counts, edges = np.histogram(values, bins=_BINS, range=(low, high) if high > low else None)
    return Histogram(
        column, int(values.size), float(values.mean()), edges.tolist(), counts.tolist(), marks
    )


def _column_values(
    layout: RunLayout, stages: list[str], columns: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Every value of each column (nulls as NaN), from the first stage whose manifests hold it."""
    owner: dict[str, str] = {}
    parts: dict[str, list[np.ndarray]] = {}
    for stage in stages:
        for shard in layout.done_shards(stage):
            path = layout.manifest(stage, shard)
            present = pq.read_schema(path).names
            names = [c for c in columns if c in present and owner.setdefault(c, stage) == stage]
            if not names:
                continue
            table = pq.read_table(path, columns=names)
            for name in names:
                array = table[name].to_numpy(zero_copy_only=False)
                parts.setdefault(name, []).append(np.asarray(array, dtype=float))
    return {c: np.concatenate(p) for c, p in parts.items()}


def timings(layout: RunLayout, stages: list[str]) -> list[ShardTiming]:
    out = []
    for stage in stages:
        for r in read_stage_reports(layout, stage):
            seconds = float(r.seconds.get("total", sum(r.seconds.values())))
            rate = r.n_rows / seconds if seconds > 0 else 0.0
            out.append(ShardTiming(stage, r.shards[0], seconds, r.n_rows, rate))
    return out


def _published_caption_words(layout: RunLayout) -> np.ndarray:
    words: list[float] = []
    for index in sorted((layout.root / "shards").glob("*.parquet")):
        captions = pq.read_table(index, columns=[S.CAPTION])[S.CAPTION].to_pylist()
        words += [len((c or "").split()) for c in captions]
    return np.asarray(words, dtype=float)


def _hand_sizes(layout: RunLayout) -> tuple[int, int, np.ndarray] | None:
    """(images scored, images with a hand, every hand's size) from the filter manifests."""
    scored, with_hands, sizes = 0, 0, []
    found = False
    for shard in layout.done_shards(FILTER):
        path = layout.manifest(FILTER, shard)
        if S.HAND_SIZES_PX not in pq.read_schema(path).names:
            continue
        found = True
        per_row = pq.read_table(path, columns=[S.HAND_SIZES_PX])[S.HAND_SIZES_PX].to_pylist()
        scored += sum(r is not None for r in per_row)
        with_hands += sum(bool(r) for r in per_row)
        sizes += [v for r in per_row if r for v in r if v is not None]
    return (scored, with_hands, np.asarray(sizes, dtype=float)) if found else None


def _published_tags(layout: RunLayout) -> tuple[int, int]:
    """(published samples, of them tagged hands_subset) from the published indexes."""
    total, tagged = 0, 0
    for index in sorted((layout.root / "shards").glob("*.parquet")):
        if S.HANDS_SUBSET in pq.read_schema(index).names:
            values = pq.read_table(index, columns=[S.HANDS_SUBSET])[S.HANDS_SUBSET].to_pylist()
            total, tagged = total + len(values), tagged + sum(v is True for v in values)
    return total, tagged


def hands_summary(layout: RunLayout, marks: list[Threshold]) -> HandsSummary | None:
    """The subset's numbers; None when no filter shard has hand columns."""
    found = _hand_sizes(layout)
    if found is None:
        return None
    scored, with_hands, sizes = found
    published, tagged = _published_tags(layout)
    size_marks = [t for t in marks if t.column == S.HAND_SIZE_PX]
    return HandsSummary(
        scored, with_hands, int(sizes.size), published, tagged,
        histogram(S.HAND_SIZES_PX, sizes, size_marks),
    )  # fmt: skip


def collect(layout: RunLayout) -> ReportData:
    """All numbers of the report."""
    stages = stages_of(layout)
    record = producing_record(layout, SHARD)
    marks = thresholds(record.config if record is not None else {})
    scores = score_columns()
    values = _column_values(layout, stages, scores)
    hists = [
        histogram(c, values[c], [t for t in marks if t.column == c])
        for c in scores
        if c in values and c != S.CAPTION_WORDS
    ]
    words = _published_caption_words(layout)
    return ReportData(
        run_dir=str(layout.root),
        stages=stages,
        config_fingerprint=record.config_fingerprint if record is not None else None,
        run_id=record.run_id if record is not None else None,
        funnel=[merge_reports(s, read_stage_reports(layout, s)) for s in stages],
        histograms=hists,
        timings=timings(layout, stages),
        caption_words=histogram(S.CAPTION_WORDS, words, []) if words.size else None,
        hands=hands_summary(layout, marks),
    )


def as_json(data: ReportData, galleries: dict[str, list[str]]) -> str:
    """The report's numbers as JSON (NaN written as null); ``galleries`` lists sample_ids."""
    body = asdict(data)
    for report in body["funnel"]:
        report["n_dropped"] = sum(report["dropped"].values())
    body["galleries"] = galleries
    return json.dumps(_finite(body), indent=2, sort_keys=True)


def _finite(node: Any) -> Any:
    if isinstance(node, float):
        return node if math.isfinite(node) else None
    if isinstance(node, dict):
        return {k: _finite(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_finite(v) for v in node]
    return node
