"""``clip``: image-text similarity and optional aesthetic / watermark heads on CLIP embeddings.

The model is an open_clip architecture name plus a local checkpoint file; heads are state
dicts of a chain of ``Linear`` layers applied to the L2-normalized image embedding (the layout
of LAION's linear aesthetic head and of the improved-aesthetic-predictor MLP, whose layers have
no activations between them).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from filters.arrays import Columns, floats, row_count, verdict
from filters.batch import Batch
from filters.clip_model import ClipScorer, load_clip_scorer
from filters.declarations import Bound
from manifests import schema as S
from manifests.device import WorkerDevice
from manifests.fingerprint import DECISION, OPERATIONAL
from manifests.model_paths import checks_model_paths

NAME = "clip"
MISSING = S.reason(NAME, "missing")
LOW_SIMILARITY = S.reason(NAME, "low_similarity")
LOW_AESTHETIC = S.reason(NAME, "low_aesthetic")
WATERMARK = S.reason(NAME, "watermark")


class ClipFilterConfig(BaseModel):
    """CLIP model, optional heads and thresholds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["clip"] = "clip"
    published: ClassVar[tuple[str, ...]] = (S.CLIP_SIMILARITY, S.AESTHETIC_SCORE, S.WATERMARK_SCORE)
    thresholds: ClassVar[dict[str, tuple[str, Bound]]] = {
        "min_similarity": (S.CLIP_SIMILARITY, "min"),
        "min_aesthetic": (S.AESTHETIC_SCORE, "min"),
        "max_watermark": (S.WATERMARK_SCORE, "max"),
    }
    model_name: str = Field(
        default="ViT-L-14",
        description="open_clip architecture; the LAION aesthetic heads use ViT-L/14",
    )
    checkpoint: Path | None = Field(
        default=None, description="local open_clip weights file (required)"
    )
    aesthetic_head: Path | None = Field(
        default=None, description="Linear-chain state dict, optional"
    )
    watermark_head: Path | None = Field(
        default=None,
        description="Linear-chain state dict; 1 output: sigmoid, 2 outputs: softmax[1]",
    )
    device: str = Field(
        default="cpu",
        json_schema_extra=OPERATIONAL,
        description="torch device: cpu, cuda (the worker's own GPU) or auto",
    )
    batch_size: int = Field(
        default=32, gt=0, json_schema_extra=OPERATIONAL, description="images per forward pass"
    )
    min_similarity: float = Field(
        default=0.28,
        json_schema_extra=DECISION,
        description="LAION-5B kept English pairs with CLIP ViT-B/32 cosine >= 0.28; re-tune for "
        "other models (scales differ)",
    )
    min_aesthetic: float | None = Field(
        default=None,
        json_schema_extra=DECISION,
        description="off by default; LAION-Aesthetics V2 subsets use 4.5, 5 and 6",
    )
    max_watermark: float | None = Field(
        default=0.8,
        json_schema_extra=DECISION,
        description="LAION-Aesthetics kept pwatermark < 0.8; checked only with a head",
    )

    @field_validator("checkpoint", "aesthetic_head", "watermark_head")
    @classmethod
    def _file_is_there(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if path is not None and checks_model_paths(info) and not path.is_file():
            what = "open_clip weights" if info.field_name == "checkpoint" else "head state dict"
            raise ValueError(f"{path} is not a file: set it to a local {what} file")
        return path

    def build(self) -> ClipFilter:
        return ClipFilter(self)


@functools.lru_cache(maxsize=2)
def _load(config: ClipFilterConfig) -> ClipScorer:
    """Model, preprocessing, tokenizer and heads, once per process and config."""
    return load_clip_scorer(
        config.model_name,
        config.checkpoint,
        config.aesthetic_head,
        config.watermark_head,
        WorkerDevice.current().torch_device(config.device),
    )


@dataclass(frozen=True)
class ClipFilter:
    """Rejects images that do not match their alt text, or look poor or watermarked."""

    config: ClipFilterConfig
    name = NAME
    reads = (S.ALT_TEXT,)
    writes = (S.CLIP_SIMILARITY, S.AESTHETIC_SCORE, S.WATERMARK_SCORE)
    reasons = (LOW_SIMILARITY, LOW_AESTHETIC, WATERMARK, MISSING)
    keep_column = S.keep_column(NAME)
    expensive = True  # a CNN per image (filters.scoring.is_expensive)

    def score(self, batch: Batch) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {name: [None] * len(batch) for name in self.writes}
        texts = batch.column(S.ALT_TEXT)
        rows = [r for r in range(len(batch)) if batch.image(r) is not None and texts[r]]
        if not rows:
            return out
        scorer = _load(self.config)
        for start in range(0, len(rows), self.config.batch_size):
            chunk = rows[start : start + self.config.batch_size]
            images = [batch.image(r) for r in chunk]
            scores = scorer.score([i for i in images if i is not None], [texts[r] for r in chunk])
            for name, values in scores.items():
                for row, value in zip(chunk, values, strict=True):
                    out[name][row] = value
        return out

    def decide(self, columns: Columns) -> tuple[np.ndarray, np.ndarray]:
        rows = row_count(columns, self.writes)
        similarity = floats(columns, S.CLIP_SIMILARITY, rows)
        missing = np.isnan(similarity)
        checks = [(similarity < self.config.min_similarity, LOW_SIMILARITY)]
        if self.config.aesthetic_head is not None and self.config.min_aesthetic is not None:
            aesthetic = floats(columns, S.AESTHETIC_SCORE, rows)
            missing |= np.isnan(aesthetic)
            checks.append((aesthetic < self.config.min_aesthetic, LOW_AESTHETIC))
        if self.config.watermark_head is not None and self.config.max_watermark is not None:
            watermark = floats(columns, S.WATERMARK_SCORE, rows)
            missing |= np.isnan(watermark)
            checks.append((watermark > self.config.max_watermark, WATERMARK))
        return verdict(rows, [(missing, MISSING), *checks])
