"""``image``: decode status, shorter side and aspect ratio; also hashes the pixels for dedup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from filters.arrays import Columns, floats, is_none, objects, row_count, verdict
from filters.batch import Batch
from filters.decode import DECODE_FAILURES, OK
from filters.perceptual_hash import phash_hex
from manifests import schema as S
from manifests.fingerprint import DECISION

NAME = "image"
MISSING = S.reason(NAME, "missing")
TOO_SMALL = S.reason(NAME, "too_small")
ASPECT_RATIO = S.reason(NAME, "aspect_ratio")
_STATUS_REASONS = {status: S.reason(NAME, status) for status in DECODE_FAILURES}


class ImageFilterConfig(BaseModel):
    """Thresholds on the decoded image itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["image"] = "image"
    caption_context: ClassVar[tuple[str, ...]] = (S.IMG_WIDTH_PX, S.IMG_HEIGHT_PX)
    min_side_px: int = Field(
        default=256,
        ge=1,
        json_schema_extra=DECISION,
        description="Stable Diffusion pre-trained on LAION at 256 px: smaller images would be "
        "upscaled for any training resolution",
    )
    max_aspect_ratio: float = Field(
        default=3.0,
        ge=1.0,
        json_schema_extra=DECISION,
        description="a square training crop keeps under a third of a wider strip, which rarely "
        "holds the whole subject",
    )
    perceptual_hash: bool = Field(
        default=True, description="write the phash dedup needs, while the pixels are decoded anyway"
    )

    def build(self) -> ImageFilter:
        return ImageFilter(self)


@dataclass(frozen=True)
class ImageFilter:
    """Rejects undecodable, tiny and extremely elongated images."""

    config: ImageFilterConfig
    name = NAME
    reads = ()
    writes = (S.DECODE_STATUS, S.IMG_WIDTH_PX, S.IMG_HEIGHT_PX, S.PHASH)
    reasons = (*_STATUS_REASONS.values(), TOO_SMALL, ASPECT_RATIO, MISSING)
    keep_column = S.keep_column(NAME)

    def score(self, batch: Batch) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {name: [] for name in self.writes}
        for row in range(len(batch)):
            image = batch.image(row)
            out[S.DECODE_STATUS].append(batch.status(row))
            out[S.IMG_WIDTH_PX].append(None if image is None else int(image.shape[1]))
            out[S.IMG_HEIGHT_PX].append(None if image is None else int(image.shape[0]))
            hashed = image is not None and self.config.perceptual_hash
            out[S.PHASH].append(phash_hex(image) if image is not None and hashed else None)
        return out

    def decide(self, columns: Columns) -> tuple[np.ndarray, np.ndarray]:
        rows = row_count(columns, self.writes)
        status = objects(columns, S.DECODE_STATUS, rows)
        width = floats(columns, S.IMG_WIDTH_PX, rows)
        height = floats(columns, S.IMG_HEIGHT_PX, rows)
        short, long = np.fmin(width, height), np.fmax(width, height)
        with np.errstate(divide="ignore", invalid="ignore"):
            aspect = long / short
        checks = [(is_none(status), MISSING)]
        checks += [(status == failure, why) for failure, why in _STATUS_REASONS.items()]
        ok = status == OK
        checks += [
            (ok & ~(short >= self.config.min_side_px), TOO_SMALL),
            (ok & (aspect > self.config.max_aspect_ratio), ASPECT_RATIO),
        ]
        return verdict(rows, checks)
