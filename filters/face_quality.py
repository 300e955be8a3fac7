"""Pixel quality of the main face: ``face_sharpness`` and ``face_exposure``.

``face_sharpness(image, box)`` is also the public scorer other code (e.g. evaluators) calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from filters.arrays import Columns, floats, row_count, verdict
from filters.batch import Batch
from filters.declarations import Bound
from manifests import schema as S
from manifests.fingerprint import DECISION

SHARPNESS = "face_sharpness"
SHARPNESS_MISSING = S.reason(SHARPNESS, "missing")
BLURRY = S.reason(SHARPNESS, "blurry")
EXPOSURE = "face_exposure"
EXPOSURE_MISSING = S.reason(EXPOSURE, "missing")
TOO_DARK = S.reason(EXPOSURE, "too_dark")
BLOWN_OUT = S.reason(EXPOSURE, "blown_out")
FLAT = S.reason(EXPOSURE, "flat")

# Crops are resampled to this side before the Laplacian, so the score does not depend on the
# face's size in pixels (the Laplacian's response scales with resolution); 128 px is the face
# size LAION-Face-derived sets keep.
SHARPNESS_SIDE_PX = 128


def face_crop_gray(image: np.ndarray, box: Sequence[float]) -> np.ndarray | None:
    """Luma (ITU-R BT.601 weights, OpenCV's RGB2GRAY) of the box clipped to the image, float32
    in 0..255; None when the clipped box is empty."""
    height, width = image.shape[:2]
    x0, y0 = max(round(box[0]), 0), max(round(box[1]), 0)
    x1, y1 = min(round(box[2]), width), min(round(box[3]), height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    return cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)


def face_sharpness(image: np.ndarray, box: Sequence[float]) -> float:
    """Variance of the Laplacian (Pech-Pacheco et al., 2000) of the face crop resampled to
    128 x 128 luma; higher is sharper, NaN for an empty crop."""
    gray = face_crop_gray(image, box)
    if gray is None:
        return float("nan")
    grow = gray.shape[0] < SHARPNESS_SIDE_PX or gray.shape[1] < SHARPNESS_SIDE_PX
    # Area averaging when shrinking avoids aliasing, which would fake sharpness.
    interpolation = cv2.INTER_LINEAR if grow else cv2.INTER_AREA
    side = (SHARPNESS_SIDE_PX, SHARPNESS_SIDE_PX)
    resized = cv2.resize(gray, side, interpolation=interpolation)
    return float(cv2.Laplacian(resized, cv2.CV_32F).var())


def face_exposure(image: np.ndarray, box: Sequence[float]) -> tuple[float, float]:
    """(brightness, contrast): mean and standard deviation of the crop's luma, in 0..1."""
    gray = face_crop_gray(image, box)
    if gray is None:
        return float("nan"), float("nan")
    return float(gray.mean() / 255.0), float(gray.std() / 255.0)


def _per_face(batch: Batch) -> list[tuple[np.ndarray, list[float]] | None]:
    """(pixels, main face box) per row, None where either is missing."""
    boxes = batch.column(S.FACE_BOX)
    out: list[tuple[np.ndarray, list[float]] | None] = []
    for row, box in enumerate(boxes):
        image = batch.image(row)
        out.append(None if image is None or box is None else (image, box))
    return out


def _nan_to_none(value: float) -> float | None:
    return None if np.isnan(value) else value


class FaceSharpnessConfig(BaseModel):
    """Minimum sharpness of the main face."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["face_sharpness"] = "face_sharpness"
    published: ClassVar[tuple[str, ...]] = (S.FACE_SHARPNESS,)
    thresholds: ClassVar[dict[str, tuple[str, Bound]]] = {
        "min_sharpness": (S.FACE_SHARPNESS, "min")
    }
    caption_context: ClassVar[tuple[str, ...]] = (S.FACE_SHARPNESS,)
    min_sharpness: float = Field(
        default=50.0,
        ge=0,
        json_schema_extra=DECISION,
        description="calibrated on the test portraits: sharp faces score 140 (astronaut, 88 px "
        "face) and 1522 (grace_hopper, 216 px); Gaussian blur sigma 1 takes the astronaut to 19, "
        "sigma 3 grace_hopper to 36",
    )

    def build(self) -> FaceSharpnessFilter:
        return FaceSharpnessFilter(self)


@dataclass(frozen=True)
class FaceSharpnessFilter:
    """Rejects images whose main face is blurred or out of focus."""

    config: FaceSharpnessConfig
    name = SHARPNESS
    reads = (S.FACE_BOX,)
    writes = (S.FACE_SHARPNESS,)
    reasons = (BLURRY, SHARPNESS_MISSING)
    keep_column = S.keep_column(SHARPNESS)

    def score(self, batch: Batch) -> dict[str, list[Any]]:
        values = [
            None if item is None else _nan_to_none(face_sharpness(*item))
            for item in _per_face(batch)
        ]
        return {S.FACE_SHARPNESS: values}

    def decide(self, columns: Columns) -> tuple[np.ndarray, np.ndarray]:
        rows = row_count(columns, self.writes)
        sharpness = floats(columns, S.FACE_SHARPNESS, rows)
        return verdict(
            rows,
            [
                (np.isnan(sharpness), SHARPNESS_MISSING),
                (sharpness < self.config.min_sharpness, BLURRY),
            ],
        )


class FaceExposureConfig(BaseModel):
    """Brightness and contrast bounds for the main face."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["face_exposure"] = "face_exposure"
    published: ClassVar[tuple[str, ...]] = (S.FACE_BRIGHTNESS, S.FACE_CONTRAST)
    thresholds: ClassVar[dict[str, tuple[str, Bound]]] = {
        "min_brightness": (S.FACE_BRIGHTNESS, "min"),
        "max_brightness": (S.FACE_BRIGHTNESS, "max"),
        "min_contrast": (S.FACE_CONTRAST, "min"),
    }
    caption_context: ClassVar[tuple[str, ...]] = (S.FACE_BRIGHTNESS, S.FACE_CONTRAST)
    min_brightness: float = Field(
        default=0.15,
        ge=0,
        le=1,
        json_schema_extra=DECISION,
        description="mean luma below 15% hides facial detail (underexposed)",
    )
    max_brightness: float = Field(
        default=0.90,
        ge=0,
        le=1,
        json_schema_extra=DECISION,
        description="mean luma above 90% means clipped highlights on skin",
    )
    min_contrast: float = Field(
        default=0.04,
        ge=0,
        le=1,
        json_schema_extra=DECISION,
        description="luma std below 4% is a flat, featureless face (fog, heavy filters)",
    )

    def build(self) -> FaceExposureFilter:
        return FaceExposureFilter(self)


@dataclass(frozen=True)
class FaceExposureFilter:
    """Rejects too dark, blown-out or flat main faces."""

    config: FaceExposureConfig
    name = EXPOSURE
    reads = (S.FACE_BOX,)
    writes = (S.FACE_BRIGHTNESS, S.FACE_CONTRAST)
    reasons = (TOO_DARK, BLOWN_OUT, FLAT, EXPOSURE_MISSING)
    keep_column = S.keep_column(EXPOSURE)

    def score(self, batch: Batch) -> dict[str, list[Any]]:
        brightness: list[float | None] = []
        contrast: list[float | None] = []
        for item in _per_face(batch):
            mean, std = face_exposure(*item) if item is not None else (np.nan, np.nan)
            brightness.append(_nan_to_none(mean))
            contrast.append(_nan_to_none(std))
        return {S.FACE_BRIGHTNESS: brightness, S.FACE_CONTRAST: contrast}

    def decide(self, columns: Columns) -> tuple[np.ndarray, np.ndarray]:
        rows = row_count(columns, self.writes)
        brightness = floats(columns, S.FACE_BRIGHTNESS, rows)
        contrast = floats(columns, S.FACE_CONTRAST, rows)
        return verdict(
            rows,
            [
                (np.isnan(brightness) | np.isnan(contrast), EXPOSURE_MISSING),
                (brightness < self.config.min_brightness, TOO_DARK),
                (brightness > self.config.max_brightness, BLOWN_OUT),
                (contrast < self.config.min_contrast, FLAT),
            ],
        )
