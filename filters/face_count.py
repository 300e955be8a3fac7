"""``face_count``: runs the face detector once per image and writes every face column.

Later face filters read these columns (boxes, landmarks, the main face) instead of detecting
again, so detection runs once per image however many face filters are configured.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from filters.arrays import Columns, list_floats, row_count, verdict
from filters.batch import Batch
from filters.declarations import Bound
from filters.detectors import DetectorConfig, Face, FaceDetector, MediaPipeDetectorConfig
from filters.detectors.base import main_face_index
from manifests import schema as S
from manifests.fingerprint import DECISION

NAME = "face_count"
MISSING = S.reason(NAME, "missing")
ZERO = S.reason(NAME, "zero")
TOO_FEW = S.reason(NAME, "too_few")
TOO_MANY = S.reason(NAME, "too_many")

FACE_COLUMNS = (
    S.FACE_COUNT, S.FACE_BOXES, S.FACE_CONFIDENCES, S.FACE_LANDMARKS, S.FACE_POSES,
    S.FACE_INDEX, S.FACE_BOX, S.FACE_CONFIDENCE, S.FACE_AGE, S.FACE_GENDER,
)  # fmt: skip


class FaceCountConfig(BaseModel):
    """Detector choice and how many confident faces an image may hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["face_count"] = "face_count"
    published: ClassVar[tuple[str, ...]] = (S.FACE_COUNT, S.FACE_CONFIDENCE, S.FACE_AGE)
    thresholds: ClassVar[dict[str, tuple[str, Bound]]] = {
        "min_faces": (S.FACE_COUNT, "min"),
        "max_faces": (S.FACE_COUNT, "max"),
    }
    caption_context: ClassVar[tuple[str, ...]] = (
        S.FACE_COUNT,
        S.FACE_BOX,
        S.FACE_AGE,
        S.FACE_GENDER,
    )
    detector: DetectorConfig = Field(
        default_factory=MediaPipeDetectorConfig,
        description="mediapipe (full range): the embedded CPU default, chosen by measurement "
        "on 1024 px downloads through the 640 px detection copy (docs/filters.md: recall 31/50 "
        "against dlib HOG's 20/50, no false positive, a quarter of the time); dlib: embedded "
        "alternative; insightface for production on GPU",
    )
    # Not a decision although ``decide`` reads it too: ``score`` uses it to pick the main face
    # (whose box every later face filter scores) and to fill ``face_count``.
    min_confidence: float = Field(
        default=0.6,
        ge=0,
        le=1,
        description="faces below it are neither counted nor the main face; detectors accept "
        "0.5 and up (dlib margin 0, InsightFace det_thresh), but dlib's 0.50-0.53 band holds "
        "false positives (the astronaut's suit patch) while real test faces score >= 0.74",
    )
    min_faces: int = Field(
        default=1, ge=0, json_schema_extra=DECISION, description="a human-face dataset needs a face"
    )
    max_faces: int = Field(
        default=3,
        ge=0,
        json_schema_extra=DECISION,
        description="beyond 3 faces each face is small and a caption's subject ambiguous; "
        "LAION-Face itself keeps any count, so this is a quality choice",
    )

    def build(self) -> FaceCountFilter:
        return FaceCountFilter(self)


@functools.lru_cache(maxsize=4)
def build_detector(config: DetectorConfig) -> FaceDetector:
    """One detector per process and config (its models load on first use)."""
    return config.build()


@dataclass(frozen=True)
class FaceCountFilter:
    """Detects faces; keeps images with ``min_faces..max_faces`` confident faces."""

    config: FaceCountConfig
    name = NAME
    reads = ()
    writes = FACE_COLUMNS
    reasons = (ZERO, TOO_FEW, TOO_MANY, MISSING)
    keep_column = S.keep_column(NAME)
    expensive = True  # the detector: most of the chain's time (bench/filter.py)

    def score(self, batch: Batch) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {name: [] for name in self.writes}
        detector = build_detector(self.config.detector) if len(batch) else None
        for row in range(len(batch)):
            # Detect on the bounded copy; faces come back in full-resolution pixels, so every
            # later filter (sizes, borders, face crops) works on the original image.
            copy = batch.detection_copy(row)
            faces = None
            if copy is not None and detector is not None:
                faces = copy.to_full(detector.detect(copy.rgb))
            for name, value in self._row(faces).items():
                out[name].append(value)
        return out

    def _row(self, faces: list[Face] | None) -> dict[str, Any]:
        """Column values of one image (all None when it has no pixels)."""
        if faces is None:
            return dict.fromkeys(self.writes)
        main = main_face_index(faces, self.config.min_confidence)
        face = faces[main] if main is not None else None
        return {
            S.FACE_COUNT: sum(f.confidence >= self.config.min_confidence for f in faces),
            S.FACE_BOXES: [list(f.box) for f in faces],
            S.FACE_CONFIDENCES: [f.confidence for f in faces],
            S.FACE_LANDMARKS: [[list(p) for p in f.landmarks] for f in faces],
            S.FACE_POSES: [list(f.pose) if f.pose is not None else None for f in faces],
            S.FACE_INDEX: main,
            S.FACE_BOX: list(face.box) if face else None,
            S.FACE_CONFIDENCE: face.confidence if face else None,
            S.FACE_AGE: face.age if face else None,
            S.FACE_GENDER: face.gender if face else None,
        }

    def decide(self, columns: Columns) -> tuple[np.ndarray, np.ndarray]:
        """Counts faces from ``face_confidences``, so ``min_confidence`` can be re-tuned.

        The main face (and the face filters' scores) stay those chosen at scoring time.
        """
        rows = row_count(columns, self.writes)
        values, parents, null = list_floats(columns, S.FACE_CONFIDENCES, rows)
        confident = parents[values >= self.config.min_confidence]
        count = np.bincount(confident, minlength=rows)[:rows]
        known = ~null
        return verdict(
            rows,
            [
                (null, MISSING),
                (known & (count == 0) & (self.config.min_faces > 0), ZERO),
                (known & (count < self.config.min_faces), TOO_FEW),
                (known & (count > self.config.max_faces), TOO_MANY),
            ],
        )
