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
import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from filters import FILTERS, RECOMMENDED_ORDER, Batch, DecodeConfig, Filter, decide_all, score_batch
from manifests import schema as S
from manifests.fingerprint import OPERATIONAL
from manifests.io import join_stages, read_manifest, write_table_atomic
from manifests.report import ShardReport
from manifests.verdicts import combine, count
from stages.base import RunContext
from stages.download_tar import image_bytes, open_download_tar
from stages.filter_decide import needs_rescoring, stored_masks
from stages.shardwise import ShardwiseStage

log = logging.getLogger(__name__)

NAME = "filter"
DEFAULT_CHAIN = [k for k in RECOMMENDED_ORDER if k != "clip"]  # clip needs a local checkpoint


class FilterStageBase(BaseModel):
    """The fixed part of section ``filter``; one optional section per filter is added below."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chain: list[str] = Field(default_factory=lambda: list(DEFAULT_CHAIN), description="in order")
    score_rejected: bool = Field(
        False, description="also score samples an earlier filter rejected (slower; full audit)"
    )
    batch_size: int = Field(
        16, ge=1, json_schema_extra=OPERATIONAL, description="images decoded and scored together"
    )
    max_pixels: int = Field(89_478_485, ge=1, description="decompression-bomb limit (PIL's)")
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

    def filter_configs(self) -> list[BaseModel]:
        return [getattr(self, name) for name in self.chain]

    def build_filters(self) -> list[Filter]:
        return [cfg.build() for cfg in self.filter_configs()]  # type: ignore[attr-defined]

    def build(self) -> FilterStage:
        return FilterStage(self)


@functools.cache
def filter_stage_config() -> type[FilterStageBase]:
    """Section ``filter``: FilterStageBase plus one section per registered filter."""
    fields: dict[str, Any] = {k: (m, Field(default_factory=m)) for k, m in FILTERS.items()}
    return create_model("FilterStageConfig", __base__=FilterStageBase, **fields)


def chain_columns(filters: list[Filter]) -> tuple[str, ...]:
    """Manifest columns for a chain: scores in chain order, per-filter keeps, the verdict."""
    scores = [c for f in filters for c in f.writes]
    keeps = [f.keep_column for f in filters]
    return (S.SAMPLE_ID, *dict.fromkeys(scores), *keeps, *S.VERDICT_COLUMNS)


class FilterStage(ShardwiseStage):
    """See the module docstring."""

    name: ClassVar[str] = NAME
    upstream: ClassVar[str | None] = "download"

    def __init__(self, config: FilterStageBase) -> None:
        self.config = config
        self.filters = config.build_filters()

    @property
    def columns(self) -> tuple[str, ...]:
        return chain_columns(self.filters)

    @property
    def resources(self) -> dict[str, float]:
        return {"GPU": 1.0} if self.config.gpu else {}

    def run_shard(self, shard: int, ctx: RunContext) -> ShardReport:
        layout = ctx.layout
        rows = join_stages(layout, ["candidates", "download"], shard, _INPUT_COLUMNS)
        upstream = np.asarray(rows[S.KEEP].to_numpy(zero_copy_only=False), dtype=bool)
        t0 = time.perf_counter()
        with open_download_tar(layout, shard) as (tar, members):
            scored = self._score(rows, upstream, lambda key: image_bytes(tar, members, key))
        score_s = time.perf_counter() - t0
        n = int(upstream.sum())
        return self._decide(
            shard, ctx, rows, upstream, self._stored(scored),
            seconds={"score": score_s},  # reading the images included
            counters={"images_per_s": n / score_s if score_s > 0 else 0.0},
        )  # fmt: skip

    def redecide_shard(self, shard: int, ctx: RunContext) -> ShardReport:
        """New thresholds over the stored scores; scores again only where they are missing."""
        layout = ctx.layout
        rows = join_stages(layout, ["candidates", "download"], shard, _INPUT_COLUMNS)
        upstream = np.asarray(rows[S.KEEP].to_numpy(zero_copy_only=False), dtype=bool)
        stored = read_manifest(layout, NAME, shard)
        scores = {c: stored[c].combine_chunks() for f in self.filters for c in f.writes}
        verdict = decide_all(self.filters, {S.ALT_TEXT: rows[S.ALT_TEXT], **scores})
        old = stored_masks(self.filters, stored)
        if not stored[S.SAMPLE_ID].equals(rows[S.SAMPLE_ID]) or (
            not self.config.score_rejected and needs_rescoring(self.filters, old, verdict, upstream)
        ):
            log.info("filter shard %05d: new thresholds reach unscored rows: scoring", shard)
            return self.run_shard(shard, ctx)
        return self._decide(shard, ctx, rows, upstream, scores, {}, {"redecided": 1.0})

    def _decide(
        self,
        shard: int,
        ctx: RunContext,
        rows: pa.Table,
        upstream: np.ndarray,
        scores: dict[str, pa.Array],
        seconds: dict[str, float],
        counters: dict[str, float],
    ) -> ShardReport:
        """Verdicts from the scores as stored (so a re-decision equals a run), then write."""
        verdict = decide_all(self.filters, {S.ALT_TEXT: rows[S.ALT_TEXT], **scores})
        own = [
            r if u else None for r, u in zip(verdict.reject_reason.tolist(), upstream, strict=True)
        ]
        after = combine(upstream, rows[S.REJECT_REASON].to_pylist(), own)
        table = self._manifest(rows, scores, verdict.per_filter, upstream, after.columns())
        write_table_atomic(table, ctx.layout.manifest(NAME, shard))
        return count(NAME, shard, upstream, after, seconds=seconds, counters=counters)

    def _stored(self, scored: dict[str, list[Any]]) -> dict[str, pa.Array]:
        """Scores as the manifest stores them (its types, e.g. float32)."""
        return {c: pa.array(v, S.COLUMNS[c].dtype) for c, v in scored.items()}

    def _score(
        self, rows: pa.Table, alive: np.ndarray, image: Callable[[object], bytes | None]
    ) -> dict[str, list[Any]]:
        """Scores for every row: batches of surviving rows, None for the others."""
        keys = rows[S.DL_KEY].to_pylist()
        texts = rows[S.ALT_TEXT].to_pylist()
        decode = DecodeConfig(max_pixels=self.config.max_pixels)
        out: dict[str, list[Any]] = {
            c: [None] * rows.num_rows for f in self.filters for c in f.writes
        }
        todo = np.flatnonzero(alive).tolist()
        for start in range(0, len(todo), self.config.batch_size):
            idx = todo[start : start + self.config.batch_size]
            batch = Batch.from_bytes(
                [image(keys[i]) for i in idx],
                {S.ALT_TEXT: [texts[i] for i in idx]},
                decode,
            )
            for name, values in score_batch(
                self.filters, batch, self.config.score_rejected
            ).items():
                for i, value in zip(idx, values, strict=True):
                    out[name][i] = value
        return out

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


def _as_array(values: object, dtype: pa.DataType) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values.cast(dtype)
    return pa.array(values, dtype)


_INPUT_COLUMNS = (S.SAMPLE_ID, S.ALT_TEXT, S.DL_KEY, S.KEEP, S.REJECT_REASON)
