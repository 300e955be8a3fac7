"""Stage ``filter``: decode each downloaded image once, score it with the filter chain, decide.

The manifest stores every filter's raw scores, its ``<filter>_keep`` and the chain's verdict,
so thresholds can be re-tuned from the manifests alone (``laionface refilter``). Samples that
failed to download pass through with their download reason and null scores.

Config: ``chain`` lists filter registry keys in order; each key may also have its own section
(``filter.face_size.min_px``), defaulting to that filter's defaults.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import cv2
import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from filters import (
    FILTERS,
    RECOMMENDED_ORDER,
    Batch,
    DecodeConfig,
    Filter,
    FilterConfig,
    decide_all,
)
from filters.image_filter import ImageFilter
from filters.scoring import ChainVerdicts, ScoredBatch, score_chain
from filters.tags import decide_tags, tag_columns
from manifests import schema as S
from manifests.fingerprint import OPERATIONAL
from manifests.io import read_manifest, write_table_atomic
from manifests.layout import RunLayout
from manifests.report import ShardReport
from manifests.verdicts import Upstream, Verdicts, read_upstream
from stages.base import RunContext
from stages.candidates import NAME as CANDIDATES
from stages.download import NAME as DOWNLOAD
from stages.download_tar import image_bytes, open_download_tar
from stages.filter_decide import needs_rescoring, reaches_unscored, stored_masks
from stages.names import FILTER
from stages.shardwise import ShardwiseStage
from stages.worker_heap import keep_freed_heap

log = logging.getLogger(__name__)

NAME = FILTER
DEFAULT_CHAIN = [k for k in RECOMMENDED_ORDER if k != "clip"]  # clip needs a local checkpoint
CONFIG_CLASS = "FilterStageConfig"  # the class filter_stage_config() builds, by its name here


class FilterStageBase(BaseModel):
    """The fixed part of section ``filter``; one optional section per filter is added below."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chain: list[str] = Field(default_factory=lambda: list(DEFAULT_CHAIN), description="in order")
    score_rejected: bool | Literal["cheap"] = Field(
        False,
        description="false: each filter scores only the samples every earlier filter kept (the "
        "cascade); cheap: only filters that declare themselves expensive (face_count's detector, "
        "nsfw, clip, ...) skip those, the others score every sample, so their thresholds stay "
        "re-decidable by refilter; true: every filter scores every sample (slower; full audit). "
        "What a filter skipped is listed in not_scored",
    )
    detect_max_side: int | None = Field(
        640,
        ge=32,
        description="detectors scan a copy whose longer side is at most this (InsightFace's "
        "det_size, 640); boxes and landmarks are mapped back to full-resolution pixels and face "
        "crops read the full image. dlib HOG then misses faces under 80 px x (longer side / "
        "this), e.g. 128 px on a 1024 px download (MediaPipe, the default, does not: "
        "docs/filters.md); null: detect at full resolution",
    )
    batch_size: int = Field(
        16, ge=1, json_schema_extra=OPERATIONAL, description="images decoded and scored together"
    )
    max_pixels: int = Field(89_478_485, ge=1, description="decompression-bomb limit (PIL's)")
    heap_keep_mib: int = Field(
        128,
        ge=0,
        json_schema_extra=OPERATIONAL,
        description="freed memory a worker's heap may keep for the next batch's image buffers "
        "(glibc mallopt; stages.worker_heap), instead of page-faulting every buffer in again; "
        "0: glibc's and Dask's own thresholds",
    )
    gpu: bool = Field(
        False,
        json_schema_extra=OPERATIONAL,
        description="annotate tasks with the GPU resource (clip, insightface)",
    )

    @field_validator("chain")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [f for f in value if f not in FILTERS]
        if unknown:
            raise ValueError(f"unknown filter(s) {unknown}; registered: {list(FILTERS)}")
        return value

    @model_validator(mode="after")
    def _clip_has_a_checkpoint(self) -> FilterStageBase:
        # Every filter has a section, chained or not; only a chained clip needs its model.
        clip = getattr(self, "clip", None)
        if "clip" in self.chain and clip is not None and clip.checkpoint is None:
            raise ValueError(
                "clip.checkpoint is required when the chain has clip: set it to a local "
                "open_clip weights file, or drop clip from the chain"
            )
        return self

    def filter_configs(self) -> list[FilterConfig]:
        return [getattr(self, name) for name in self.chain]

    def build_filters(self) -> list[Filter]:
        return [cfg.build() for cfg in self.filter_configs()]

    def build(self) -> FilterStage:
        return FilterStage(self)


@functools.cache
def filter_stage_config() -> type[FilterStageBase]:
    """Section ``filter``: FilterStageBase plus one section per registered filter."""
    fields: dict[str, Any] = {k: (m, Field(default_factory=m)) for k, m in FILTERS.items()}
    return create_model(CONFIG_CLASS, __base__=FilterStageBase, __module__=__name__, **fields)


def __getattr__(name: str) -> type[FilterStageBase]:
    """``stages.filter.FilterStageConfig`` is the class ``filter_stage_config`` builds, so
    pickle finds it by name: every filter task the driver sends then refers to the class
    instead of carrying its definition (54 KB a task, which Dask's message log keeps 1000 of)."""
    if name == CONFIG_CLASS:
        return filter_stage_config()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def chain_columns(filters: list[Filter]) -> tuple[str, ...]:
    """Manifest columns for a chain: scores in chain order, per-filter keeps, the verdict."""
    scores = [c for f in filters for c in f.writes]
    keeps = [f.keep_column for f in filters]
    tags = tag_columns(filters)  # decided like the keeps: from the stored scores
    return (S.SAMPLE_ID, *dict.fromkeys(scores), *keeps, *tags, S.NOT_SCORED, *S.VERDICT_COLUMNS)


@dataclass
class ChainTimer:
    """Seconds per step of a shard's scoring, summed over its batches: ``read`` (tar),
    ``decode``, one ``score.<filter>`` per filter, ``decide``; and per filter the rows it
    scored (``scored.<filter>``, a report counter), so the cascade's savings are visible."""

    seconds: dict[str, float] = field(default_factory=dict)
    rows: dict[str, float] = field(default_factory=dict)

    def add(self, step: str, seconds: float) -> None:
        self.seconds[step] = self.seconds.get(step, 0.0) + seconds

    def add_scored(self, result: ScoredBatch) -> None:
        for name, seconds in result.seconds.items():
            self.add(name if name == "decide" else f"score.{name}", seconds)
        for name, n in result.scored_rows.items():
            self.rows[f"scored.{name}"] = self.rows.get(f"scored.{name}", 0.0) + n


@dataclass(frozen=True)
class ChainDecision:
    """The chain's verdicts over one shard's scores (decided once, then written or reported)."""

    upstream: Upstream  # the rows and the verdict they entered the stage with
    scores: dict[str, pa.Array]  # the chain's score columns (and not_scored), as stored
    verdict: ChainVerdicts

    def after(self) -> Verdicts:
        """The stage's verdict: rows that never entered keep their upstream reason."""
        return self.upstream.combine(self.verdict.reject_reason.tolist())


@dataclass(frozen=True)
class StoredDecision(ChainDecision):
    """A ``ChainDecision`` over the scores of the shard's manifest as stored
    (``FilterStage.stored_decision``)."""

    manifest: pa.Table


class FilterStage(ShardwiseStage):
    """See the module docstring."""

    name: ClassVar[str] = NAME
    reads: ClassVar[tuple[str, ...]] = (CANDIDATES, DOWNLOAD)
    upstream: ClassVar[str | None] = DOWNLOAD

    def __init__(self, config: FilterStageBase) -> None:
        self.config = config
        self.filters = config.build_filters()

    @property
    def columns(self) -> tuple[str, ...]:
        return chain_columns(self.filters)

    @property
    def provides(self) -> tuple[str, ...]:
        """``columns`` less the perceptual hash when the image filter is set not to compute
        it (the column is then written, empty)."""
        unhashed = any(
            isinstance(f, ImageFilter) and not f.config.perceptual_hash for f in self.filters
        )
        return tuple(c for c in self.columns if not (unhashed and c == S.PHASH))

    @property
    def resources(self) -> dict[str, float]:
        return {"GPU": 1.0} if self.config.gpu else {}

    def run_shard(self, shard: int, ctx: RunContext) -> ShardReport:
        layout = ctx.layout
        upstream = read_upstream(layout, self.reads, shard, _INPUT_COLUMNS)
        prepare_process(self.config)
        timer = ChainTimer()
        t0 = time.perf_counter()
        with open_download_tar(layout, shard) as (tar, members):
            scored = self._score(
                upstream.rows, upstream.keep, lambda k: image_bytes(tar, members, k), timer
            )
        score_s = time.perf_counter() - t0
        n = int(upstream.keep.sum())
        return self._decide(
            shard, ctx, self._decision(upstream, self._stored(scored)),
            seconds={"score": score_s, **timer.seconds},  # score: reading the images included
            counters={"images_per_s": n / score_s if score_s > 0 else 0.0, **timer.rows},
        )  # fmt: skip

    def redecide_shard(self, shard: int, ctx: RunContext) -> ShardReport:
        """New thresholds over the stored scores; scores again only where they are missing."""
        stored = self.stored_decision(ctx.layout, shard)
        rows = stored.upstream.rows
        if not stored.manifest[S.SAMPLE_ID].equals(rows[S.SAMPLE_ID]) or self._must_rescore(
            stored.manifest, stored.verdict, stored.upstream.keep
        ):
            log.info("filter shard %05d: new thresholds reach unscored rows: scoring", shard)
            return self.run_shard(shard, ctx)
        return self._decide(shard, ctx, stored, {}, {"redecided": 1.0})

    def stored_decision(self, layout: RunLayout, shard: int) -> StoredDecision:
        """This chain's verdicts over the scores stored in the shard's manifest, without any
        model: what a re-decision writes (``redecide_shard``) and ``laionface refilter``
        reports. A ValueError from a filter's decide means scores it needs are not stored."""
        upstream = read_upstream(layout, self.reads, shard, _INPUT_COLUMNS)
        manifest = read_manifest(layout, NAME, shard)
        wanted = [*(c for f in self.filters for c in f.writes), S.NOT_SCORED]
        present = [c for c in dict.fromkeys(wanted) if c in manifest.column_names]
        scores = {c: manifest[c].combine_chunks() for c in present}
        decision = self._decision(upstream, scores)
        return StoredDecision(upstream, scores, decision.verdict, manifest)

    def _decision(self, upstream: Upstream, scores: dict[str, pa.Array]) -> ChainDecision:
        """The chain's verdicts from the scores as stored (so a re-decision equals a run)."""
        rows = upstream.rows
        return ChainDecision(
            upstream, scores, decide_all(self.filters, {S.ALT_TEXT: rows[S.ALT_TEXT], **scores})
        )

    def _must_rescore(self, stored: pa.Table, verdict: ChainVerdicts, upstream: np.ndarray) -> bool:
        """Whether new verdicts let an entering row reach a filter that never scored it."""
        if S.NOT_SCORED in stored.column_names:
            return reaches_unscored(verdict, upstream)
        # A manifest written before not_scored existed: what was scored follows from the
        # stored per-filter masks (the cascade over every filter was the only one then).
        old = stored_masks(self.filters, stored)
        return not self.config.score_rejected and needs_rescoring(
            self.filters, old, verdict, upstream
        )

    def _decide(
        self,
        shard: int,
        ctx: RunContext,
        decision: ChainDecision,
        seconds: dict[str, float],
        counters: dict[str, float],
    ) -> ShardReport:
        """Write the manifest of ``decision`` and return the shard's report."""
        upstream, scores, verdict = decision.upstream, decision.scores, decision.verdict
        after = decision.after()
        decided = {**verdict.per_filter, **decide_tags(self.filters, scores)}
        table = self._manifest(upstream.rows, scores, decided, upstream.keep, after.columns())
        write_table_atomic(table, ctx.layout.manifest(NAME, shard))
        return upstream.count(NAME, shard, after, seconds=seconds, counters=counters)

    def _stored(self, scored: dict[str, list[Any]]) -> dict[str, pa.Array]:
        """Scores as the manifest stores them (its types, e.g. float32)."""
        return {c: pa.array(v, S.COLUMNS[c].dtype) for c, v in scored.items()}

    def _score(
        self,
        rows: pa.Table,
        alive: np.ndarray,
        image: Callable[[object], bytes | None],
        timer: ChainTimer,
    ) -> dict[str, list[Any]]:
        """Scores and ``NOT_SCORED`` for every row: batches of surviving rows, None for the
        others."""
        keys = rows[S.DL_KEY].to_pylist()
        texts = rows[S.ALT_TEXT].to_pylist()
        out: dict[str, list[Any]] = {
            c: [None] * rows.num_rows for f in self.filters for c in (*f.writes, S.NOT_SCORED)
        }
        todo = np.flatnonzero(alive).tolist()
        for start in range(0, len(todo), self.config.batch_size):
            idx = todo[start : start + self.config.batch_size]
            batch = self._batch([keys[i] for i in idx], [texts[i] for i in idx], image, timer)
            result = score_chain(self.filters, batch, self.config.score_rejected)
            for name, values in (*result.columns.items(), (S.NOT_SCORED, result.not_scored)):
                for i, value in zip(idx, values, strict=True):
                    out[name][i] = value
            timer.add_scored(result)
        return out

    def _batch(
        self,
        keys: list[object],
        texts: list[str | None],
        image: Callable[[object], bytes | None],
        timer: ChainTimer,
    ) -> Batch:
        """Read and decode the images of one batch, timing both."""
        t0 = time.perf_counter()
        blobs = [image(key) for key in keys]
        t1 = time.perf_counter()
        decode = DecodeConfig(max_pixels=self.config.max_pixels)
        batch = Batch.from_bytes(blobs, {S.ALT_TEXT: texts}, decode, self.config.detect_max_side)
        timer.add("read", t1 - t0)
        timer.add("decode", time.perf_counter() - t1)
        return batch

    def _manifest(
        self,
        rows: pa.Table,
        scored: dict[str, pa.Array],
        per_filter: dict[str, np.ndarray],
        entered: np.ndarray,
        verdict: dict[str, pa.Array],
    ) -> pa.Table:
        columns: dict[str, Any] = {S.SAMPLE_ID: rows[S.SAMPLE_ID]}
        columns.update(scored)
        for name, mask in per_filter.items():
            # A row that never entered this stage has no per-filter verdict of its own.
            columns[name] = [bool(m) if e else None for m, e in zip(mask, entered, strict=True)]
        columns.update(verdict)
        schema = S.schema_for(self.columns)
        arrays = [_as_array(columns[f.name], f.type) for f in schema]
        return pa.table(arrays, schema=schema)


def prepare_process(config: FilterStageBase) -> None:
    """The process settings the filter stage scores with (and ``bench/filter.py``'s loops, so
    they measure the same backend): OpenCV's threads, and the heap keeping image buffers."""
    limit_library_threads()
    keep_freed_heap(config.heap_keep_mib)


def limit_library_threads() -> None:
    """OpenCV's own thread pool to the worker's thread budget.

    Dask's nanny sets ``OMP_NUM_THREADS`` (1 per worker thread), which ONNX Runtime
    (``filters.nsfw``) and BLAS follow, but OpenCV keeps a pool as large as the machine; two
    workers on two cores then oversubscribe them in every resize and colour conversion.
    """
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0 and cv2.getNumThreads() != int(value):
        cv2.setNumThreads(int(value))


def _as_array(values: object, dtype: pa.DataType) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values.cast(dtype)
    return pa.array(values, dtype)


_INPUT_COLUMNS = (S.SAMPLE_ID, S.ALT_TEXT, S.DL_KEY, S.KEEP, S.REJECT_REASON)
