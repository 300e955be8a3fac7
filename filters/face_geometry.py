"""Filters on the main face's box alone: ``face_size``, ``face_confidence``, ``face_border``.

They read the columns ``face_count`` writes and need no pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from filters.arrays import Columns, floats, row_count, verdict
from filters.batch import Batch
from filters.declarations import Bound
from manifests import schema as S
from manifests.fingerprint import DECISION

SIZE = "face_size"
SIZE_MISSING = S.reason(SIZE, "missing")
SIZE_TOO_SMALL = S.reason(SIZE, "too_small")
SIZE_SMALL_FRACTION = S.reason(SIZE, "small_fraction")
CONFIDENCE = "face_confidence"
CONFIDENCE_MISSING = S.reason(CONFIDENCE, "missing")
CONFIDENCE_LOW = S.reason(CONFIDENCE, "low")
BORDER = "face_border"
BORDER_MISSING = S.reason(BORDER, "missing")
BORDER_CUT_OFF = S.reason(BORDER, "cut_off")

_DIMS = (S.IMG_WIDTH_PX, S.IMG_HEIGHT_PX)


def _box_rows(batch: Batch) -> list[tuple[list[float] | None, float | None, float | None]]:
    """(main face box, image width, image height) per row."""
    boxes = batch.column(S.FACE_BOX)
    widths, heights = batch.column(S.IMG_WIDTH_PX), batch.column(S.IMG_HEIGHT_PX)
    return list(zip(boxes, widths, heights, strict=True))


class FaceSizeConfig(BaseModel):
    """Minimum size of the main face, absolute and relative to the image."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["face_size"] = "face_size"
    published: ClassVar[tuple[str, ...]] = (S.FACE_SIZE_PX, S.FACE_AREA_FRACTION)
    thresholds: ClassVar[dict[str, tuple[str, Bound]]] = {
        "min_px": (S.FACE_SIZE_PX, "min"),
        "min_area_fraction": (S.FACE_AREA_FRACTION, "min"),
    }
    caption_context: ClassVar[tuple[str, ...]] = (S.FACE_SIZE_PX, S.FACE_AREA_FRACTION)
    min_px: float = Field(
        default=80.0,
        ge=0,
        json_schema_extra=DECISION,
        description="shorter box side; LAION-Face-derived sets keep faces > 128 px in SCRFD "
        "boxes, which include the forehead; 80 px is dlib HOG's detection window (its tighter "
        "boxes are smaller; MediaPipe's are ~1.2x dlib's: the astronaut 104 against 88 px). "
        "Use 128 with insightface",
    )
    min_area_fraction: float = Field(
        default=0.02,
        ge=0,
        le=1,
        json_schema_extra=DECISION,
        description="below 2% of the frame the face is a background detail, not the subject "
        "(a half-body portrait such as skimage's astronaut is ~4% with MediaPipe boxes, ~3% "
        "with dlib's)",
    )

    def build(self) -> FaceSizeFilter:
        return FaceSizeFilter(self)


@dataclass(frozen=True)
class FaceSizeFilter:
    """Rejects images whose main face is small in pixels or in share of the frame."""

    config: FaceSizeConfig
    name = SIZE
    reads = (S.FACE_BOX, *_DIMS)
    writes = (S.FACE_SIZE_PX, S.FACE_AREA_FRACTION)
    reasons = (SIZE_TOO_SMALL, SIZE_SMALL_FRACTION, SIZE_MISSING)
    keep_column = S.keep_column(SIZE)

    def score(self, batch: Batch) -> dict[str, list[Any]]:
        sizes: list[float | None] = []
        fractions: list[float | None] = []
        for box, width, height in _box_rows(batch):
            if box is None or not width or not height:
                sizes.append(None)
                fractions.append(None)
                continue
            box_w, box_h = box[2] - box[0], box[3] - box[1]
            sizes.append(float(min(box_w, box_h)))
            fractions.append(float(box_w * box_h / (width * height)))
        return {S.FACE_SIZE_PX: sizes, S.FACE_AREA_FRACTION: fractions}

    def decide(self, columns: Columns) -> tuple[np.ndarray, np.ndarray]:
        rows = row_count(columns, self.writes)
        size = floats(columns, S.FACE_SIZE_PX, rows)
        fraction = floats(columns, S.FACE_AREA_FRACTION, rows)
        return verdict(
            rows,
            [
                (np.isnan(size) | np.isnan(fraction), SIZE_MISSING),
                (size < self.config.min_px, SIZE_TOO_SMALL),
                (fraction < self.config.min_area_fraction, SIZE_SMALL_FRACTION),
            ],
        )


class FaceConfidenceConfig(BaseModel):
    """Minimum detector confidence of the main face."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["face_confidence"] = "face_confidence"
    thresholds: ClassVar[dict[str, tuple[str, Bound]]] = {
        "min_confidence": (S.FACE_CONFIDENCE, "min")
    }
    min_confidence: float = Field(
        default=0.7,
        ge=0,
        le=1,
        json_schema_extra=DECISION,
        description="stricter than detection's 0.5: keeps clear faces only (dlib margin 0.85; "
        "clean frontal portraits score ~0.8 with dlib, ~0.8-0.9 with SCRFD)",
    )

    def build(self) -> FaceConfidenceFilter:
        return FaceConfidenceFilter(self)


@dataclass(frozen=True)
class FaceConfidenceFilter:
    """Rejects images whose main face the detector is unsure of."""

    config: FaceConfidenceConfig
    name = CONFIDENCE
    reads = (S.FACE_CONFIDENCE,)
    writes = ()
    reasons = (CONFIDENCE_LOW, CONFIDENCE_MISSING)
    keep_column = S.keep_column(CONFIDENCE)

    def score(self, batch: Batch) -> dict[str, list[Any]]:
        return {}

    def decide(self, columns: Columns) -> tuple[np.ndarray, np.ndarray]:
        rows = row_count(columns, self.reads)
        confidence = floats(columns, S.FACE_CONFIDENCE, rows)
        return verdict(
            rows,
            [
                (np.isnan(confidence), CONFIDENCE_MISSING),
                (confidence < self.config.min_confidence, CONFIDENCE_LOW),
            ],
        )


class FaceBorderConfig(BaseModel):
    """How far inside the image the main face box must lie."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["face_border"] = "face_border"
    published: ClassVar[tuple[str, ...]] = (S.FACE_BORDER_MARGIN,)
    thresholds: ClassVar[dict[str, tuple[str, Bound]]] = {
        "min_margin": (S.FACE_BORDER_MARGIN, "min")
    }
    min_margin: float = Field(
        default=0.0,
        json_schema_extra=DECISION,
        description="in face sizes; detector boxes stop short of hair and chin, so a box that "
        "leaves the image means the face itself is cut off",
    )

    def build(self) -> FaceBorderFilter:
        return FaceBorderFilter(self)


def border_margin(box: list[float], width: float, height: float) -> float:
    """Smallest box-to-border distance over the box's shorter side (< 0: box leaves the image)."""
    x0, y0, x1, y1 = box
    size = max(min(x1 - x0, y1 - y0), 1e-6)
    return float(min(x0, y0, width - x1, height - y1) / size)


@dataclass(frozen=True)
class FaceBorderFilter:
    """Rejects images whose main face is cut off by the image border."""

    config: FaceBorderConfig
    name = BORDER
    reads = (S.FACE_BOX, *_DIMS)
    writes = (S.FACE_BORDER_MARGIN,)
    reasons = (BORDER_CUT_OFF, BORDER_MISSING)
    keep_column = S.keep_column(BORDER)

    def score(self, batch: Batch) -> dict[str, list[Any]]:
        margins = [
            border_margin(box, width, height) if box is not None and width and height else None
            for box, width, height in _box_rows(batch)
        ]
        return {S.FACE_BORDER_MARGIN: margins}

    def decide(self, columns: Columns) -> tuple[np.ndarray, np.ndarray]:
        rows = row_count(columns, self.writes)
        margin = floats(columns, S.FACE_BORDER_MARGIN, rows)
        return verdict(
            rows,
            [(np.isnan(margin), BORDER_MISSING), (margin < self.config.min_margin, BORDER_CUT_OFF)],
        )
