"""Stage ``caption``: fine-grained captions for the samples still kept after filter and dedup.

The captioner is named by registry key (``captioner: {type: hf_vlm, model_path: ...}``); the
embedded default, ``attributes``, needs no model. Captions are cleaned (boilerplate, loops,
refusals, word and text-encoder token limits) and every sample's caption model and prompt
version are recorded. The original alt text stays in the candidates manifest, untouched.
A kept sample left without a caption (refused, failed) is dropped with ``caption:refused`` or
``caption:failed`` unless a ``fallback`` captioner (e.g. ``attributes``) fills it in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from captioners import (
    AttributesConfig,
    CaptionContext,
    Captioner,
    CaptionerConfig,
    CaptionStats,
    CleaningConfig,
    caption_batch,
)
from filters import FILTERS
from filters.declarations import caption_context_columns
from filters.decode import DecodedImage, decode_image
from manifests import schema as S
from manifests.fingerprint import OPERATIONAL
from manifests.io import write_table_atomic
from manifests.report import ShardReport
from manifests.verdicts import read_upstream
from stages.base import RunContext
from stages.candidates import NAME as CANDIDATES
from stages.dedup import NAME as DEDUP
from stages.download import NAME as DOWNLOAD
from stages.download_tar import image_bytes, open_download_tar
from stages.filter import NAME as FILTER
from stages.names import CAPTION
from stages.shardwise import ShardwiseStage

NAME = CAPTION
# A kept sample left without a caption: the captioner (and fallback) refused, or failed.
REFUSED_REASON = S.reason(NAME, "refused")
FAILED_REASON = S.reason(NAME, "failed")


def _default_captioner() -> CaptionerConfig:
    """The embedded default: deterministic captions from measured attributes, no model."""
    return AttributesConfig.model_validate({})


class CaptionStageConfig(BaseModel):
    """Section ``caption``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    captioner: CaptionerConfig = Field(default_factory=_default_captioner)
    fallback: CaptionerConfig | None = Field(
        None, description="captions what the captioner refused"
    )
    cleaning: CleaningConfig = Field(default_factory=CleaningConfig)  # type: ignore[arg-type]
    batch_size: int = Field(
        16, ge=1, json_schema_extra=OPERATIONAL, description="samples per captioner call"
    )
    gpu: bool = Field(
        False,
        json_schema_extra=OPERATIONAL,
        description="annotate tasks with the GPU resource (a local VLM)",
    )

    def build(self) -> CaptionStage:
        return CaptionStage(self)


def _captioner(config: CaptionerConfig) -> Captioner:
    """The configured captioner; model-backed ones cache their weights per worker process
    inside ``build`` (``hf_vlm``), so a VLM loads once, not once per shard."""
    return config.build()


class CaptionStage(ShardwiseStage):
    """See the module docstring."""

    name: ClassVar[str] = NAME
    # Every earlier manifest: a caption's context is the sample's whole history.
    reads: ClassVar[tuple[str, ...]] = (CANDIDATES, DOWNLOAD, FILTER, DEDUP)
    upstream: ClassVar[str | None] = DEDUP
    columns: ClassVar[tuple[str, ...]] = (*S.CAPTION_RECORD_COLUMNS, *S.VERDICT_COLUMNS)

    def __init__(self, config: CaptionStageConfig) -> None:
        self.config = config

    @property
    def resources(self) -> dict[str, float]:
        return {"GPU": 1.0} if self.config.gpu else {}

    def run_shard(self, shard: int, ctx: RunContext) -> ShardReport:
        upstream = read_upstream(ctx.layout, self.reads, shard)
        rows = upstream.rows
        t0 = time.perf_counter()
        with open_download_tar(ctx.layout, shard) as (tar, members):
            values, stats = self._caption(
                rows, upstream.keep, lambda k: image_bytes(tar, members, k)
            )
        # combine ignores the reasons of rows that never entered (they have no caption).
        after = upstream.combine([_why_dropped(values, i) for i in range(rows.num_rows)])
        table = pa.table({**values, **after.columns()})
        write_table_atomic(table.cast(S.schema_for(self.columns)), ctx.layout.manifest(NAME, shard))
        return upstream.count(
            NAME, shard, after,
            seconds={"caption": time.perf_counter() - t0}, counters=stats.as_report(),
        )  # fmt: skip

    def _caption(
        self, rows: pa.Table, alive: np.ndarray, image: Callable[[object], bytes | None]
    ) -> tuple[dict[str, list[Any]], CaptionStats]:
        """Caption columns for every row (None where the sample is not kept) and the stats."""
        captioner = _captioner(self.config.captioner)
        fallback = _captioner(self.config.fallback) if self.config.fallback is not None else None
        needs_pixels = captioner.needs_pixels or (fallback is not None and fallback.needs_pixels)
        records = rows.to_pylist()
        values: dict[str, list[Any]] = {c: [None] * rows.num_rows for c in S.CAPTION_RECORD_COLUMNS}
        values[S.SAMPLE_ID] = rows[S.SAMPLE_ID].to_pylist()
        stats = CaptionStats()
        context = caption_context_columns(FILTERS)  # what the filters offer captioners
        todo = np.flatnonzero(alive).tolist()
        for start in range(0, len(todo), self.config.batch_size):
            idx = todo[start : start + self.config.batch_size]
            contexts = [CaptionContext.from_row(records[i], context) for i in idx]
            images = [_pixels(image(records[i][S.DL_KEY])) for i in idx] if needs_pixels else []
            batch = caption_batch(captioner, images, contexts, self.config.cleaning, fallback)
            for name, column in batch.columns().items():
                for i, value in zip(idx, column, strict=True):
                    values[name][i] = value
            stats = stats + batch.stats
        return values, stats


def _pixels(blob: bytes | None) -> np.ndarray:
    """Decoded RGB pixels; the filter stage already proved these bytes decode."""
    decoded = decode_image(blob) if blob else "empty"
    if not isinstance(decoded, DecodedImage):
        raise ValueError(f"a kept sample's image does not decode ({decoded})")
    return decoded.rgb


def _why_dropped(values: dict[str, list[Any]], i: int) -> str | None:
    if values[S.CAPTION][i] is not None:
        return None
    return REFUSED_REASON if values[S.CAPTION_REFUSAL][i] else FAILED_REASON
