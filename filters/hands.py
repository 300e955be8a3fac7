"""``hands``: detects hands and tags the hand-focused subset; it never drops a sample.

``score`` runs the hand detector once per image (``HAND_DETECTORS``) and stores every hand:
box, handedness, 21 landmarks, confidence, size in px and relative to the main face (from
``face_count``'s ``face_box``), and whether it lies fully inside the frame. ``decide`` keeps
every row; ``tag`` decides ``hands_subset`` from those stored scores alone (at least one hand
with ``subset_min_confidence``, ``subset_min_size_px`` and, if ``subset_inside_frame``, all of
it in the frame), so ``refilter`` and a re-decided rerun re-tag without running a model.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from filters.arrays import Columns, list_floats, row_count
from filters.batch import Batch
from filters.declarations import Bound
from filters.hand_detectors import Hand, HandDetector, HandDetectorConfig, MediaPipeHandsConfig
from manifests import schema as S
from manifests.fingerprint import DECISION

NAME = "hands"
MISSING = S.reason(NAME, "missing")  # declared as every filter's; never emitted (never drops)

HAND_COLUMNS = (
    S.HAND_COUNT, S.HAND_BOXES, S.HAND_CONFIDENCES, S.HAND_HANDEDNESS, S.HAND_LANDMARKS,
    S.HAND_SIZES_PX, S.HAND_FACE_RATIOS, S.HAND_INSIDE_FRAME, S.HAND_SIZE_PX, S.HAND_FACE_RATIO,
)  # fmt: skip


class HandsConfig(BaseModel):
    """Hand detector choice and the rule of the hand-focused subset tag."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["hands"] = "hands"
    published: ClassVar[tuple[str, ...]] = (S.HAND_COUNT, S.HAND_SIZE_PX, S.HAND_FACE_RATIO)
    # The subset rule tags (never drops); its size line is drawn on the largest hand's size.
    thresholds: ClassVar[dict[str, tuple[str, Bound]]] = {
        "subset_min_size_px": (S.HAND_SIZE_PX, "min"),
    }
    caption_context: ClassVar[tuple[str, ...]] = (S.HAND_COUNT,)
    subset_tags: ClassVar[tuple[str, ...]] = (S.HANDS_SUBSET,)
    detector: HandDetectorConfig = Field(
        default_factory=MediaPipeHandsConfig,
        description="mediapipe: embedded CPU default; onnx: a local whole-body keypoint model",
    )
    subset_min_confidence: float = Field(
        default=0.5,
        ge=0,
        le=1,
        json_schema_extra=DECISION,
        description="a tagged hand's detector confidence at least this; 0.5 is MediaPipe's "
        "own default threshold (its handedness score of a clear hand is >= 0.75)",
    )
    subset_min_size_px: float = Field(
        default=64.0,
        ge=0,
        json_schema_extra=DECISION,
        description="a tagged hand's longer side at least this: a third of MediaPipe's "
        "224 px landmark-model input, below which fingers are a few pixels wide",
    )
    subset_inside_frame: bool = Field(
        default=True,
        json_schema_extra=DECISION,
        description="a tagged hand has all 21 landmarks inside the image (no cut-off fingers)",
    )

    def build(self) -> HandsFilter:
        return HandsFilter(self)


@functools.lru_cache(maxsize=4)
def build_hand_detector(config: HandDetectorConfig) -> HandDetector:
    """One detector per process and config (its models load on first use)."""
    detector: HandDetector = config.build()
    return detector


@dataclass(frozen=True)
class HandsFilter:
    """Detects hands; keeps every row and tags the subset (``tag_columns``)."""

    config: HandsConfig
    name = NAME
    reads = (S.FACE_BOX,)
    writes = HAND_COLUMNS
    reasons = (MISSING,)
    keep_column = S.keep_column(NAME, note="always kept")
    tag_columns = HandsConfig.subset_tags
    expensive = True  # runs a model: skipped for rejected rows under score_rejected: cheap

    def score(self, batch: Batch) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {name: [] for name in self.writes}
        detector = build_hand_detector(self.config.detector) if len(batch) else None
        faces = batch.column(S.FACE_BOX)
        for row in range(len(batch)):
            # The copy face_count scanned (bounded by filter.detect_max_side), shared per row;
            # hands are mapped back to full-resolution pixels.
            copy = batch.detection_copy(row)
            hands = None
            if copy is not None and detector is not None:
                hands = copy.to_full(detector.detect(copy.rgb))
            image = batch.image(row)
            shape = image.shape[:2] if image is not None else (0, 0)
            for name, value in hand_row(hands, shape, faces[row]).items():
                out[name].append(value)
        return out

    def decide(self, columns: Columns) -> tuple[np.ndarray, np.ndarray]:
        """Every row is kept: hands select a subset, they are no quality criterion."""
        rows = row_count(columns, (*self.reads, *self.writes))
        return np.ones(rows, dtype=bool), np.full(rows, None, dtype=object)

    def tag(self, columns: Columns) -> dict[str, np.ndarray]:
        """``hands_subset`` per row, from the stored per-hand scores (False: no hands scored)."""
        rows = row_count(columns, self.writes)
        confidence, parents, _ = list_floats(columns, S.HAND_CONFIDENCES, rows)
        size, _, _ = list_floats(columns, S.HAND_SIZES_PX, rows)
        inside, _, _ = list_floats(columns, S.HAND_INSIDE_FRAME, rows)
        good = (confidence >= self.config.subset_min_confidence) & (
            size >= self.config.subset_min_size_px
        )
        if self.config.subset_inside_frame:
            good &= inside == 1.0
        tagged = np.bincount(parents[good], minlength=rows)[:rows] > 0
        return {S.HANDS_SUBSET: tagged}


def hand_row(
    hands: list[Hand] | None, shape: tuple[int, int], face_box: Sequence[float] | None
) -> dict[str, Any]:
    """Column values of one image (all None when it has no pixels); ``shape`` is (H, W)."""
    if hands is None:
        return dict.fromkeys(HAND_COLUMNS)
    height, width = shape
    face = _face_size(face_box)
    sizes = [hand.size_px for hand in hands]
    ratios = [size / face if face else None for size in sizes]
    largest = int(np.argmax(sizes)) if hands else None
    return {
        S.HAND_COUNT: len(hands),
        S.HAND_BOXES: [list(hand.box) for hand in hands],
        S.HAND_CONFIDENCES: [hand.confidence for hand in hands],
        S.HAND_HANDEDNESS: [hand.handedness for hand in hands],
        S.HAND_LANDMARKS: [[list(p) for p in hand.landmarks] for hand in hands],
        S.HAND_SIZES_PX: sizes,
        S.HAND_FACE_RATIOS: ratios,
        S.HAND_INSIDE_FRAME: [hand.inside(width, height) for hand in hands],
        S.HAND_SIZE_PX: sizes[largest] if largest is not None else None,
        S.HAND_FACE_RATIO: ratios[largest] if largest is not None else None,
    }


def _face_size(box: Sequence[float] | None) -> float | None:
    """The main face's shorter side, as ``face_size`` measures it (None: no main face)."""
    if box is None:
        return None
    x0, y0, x1, y1 = box
    side = min(x1 - x0, y1 - y0)
    return float(side) if side > 0 else None
