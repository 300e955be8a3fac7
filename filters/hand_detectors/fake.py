"""A scripted ``HandDetector`` for tests and dry runs: returns the hands its config lists."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from filters.hand_detectors.base import HAND_POINTS, Hand, Handedness, as_hand_points

# An open right hand, palm to the viewer, in fractions of its box: the wrist at the bottom
# centre, then thumb to pinky as four points each, fanned from the palm towards the top.
_FINGER_BASES = np.array([[0.3, 0.75], [0.35, 0.45], [0.5, 0.4], [0.65, 0.42], [0.8, 0.5]])
_FINGER_TIPS = np.array([[0.0, 0.45], [0.25, 0.0], [0.5, 0.0], [0.75, 0.0], [1.0, 0.15]])


def _template() -> np.ndarray:
    steps = np.linspace(0.0, 1.0, 4)[:, None]
    pairs = zip(_FINGER_BASES, _FINGER_TIPS, strict=True)
    fingers = [base + steps * (tip - base) for base, tip in pairs]
    points = np.vstack([[[0.5, 1.0]], *fingers])
    assert points.shape == (HAND_POINTS, 2)
    return points


_TEMPLATE = _template()


class FakeHandConfig(BaseModel):
    """One scripted hand; its box is given in fractions of the image width and height (it may
    reach past the frame to script a cut-off hand)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    box: tuple[float, float, float, float] = (0.05, 0.6, 0.25, 0.9)
    confidence: float = 0.9
    handedness: Handedness | None = "right"

    def to_hand(self, width: int, height: int) -> Hand:
        x0, y0, x1, y1 = self.box
        origin = np.array([x0 * width, y0 * height])
        extent = np.array([(x1 - x0) * width, (y1 - y0) * height])
        return Hand(as_hand_points(origin + _TEMPLATE * extent), self.confidence, self.handedness)


class FakeHandDetectorConfig(BaseModel):
    """Scripted detector: ``by_height`` picks hands by image height, else ``hands``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["fake"] = "fake"
    hands: tuple[FakeHandConfig, ...] = Field(
        default=(FakeHandConfig(),), description="default: one right hand, lower left, 20% wide"
    )
    by_height: tuple[tuple[int, tuple[FakeHandConfig, ...]], ...] = Field(
        default=(), description="(image height px, hands) pairs: lets a test script each image"
    )

    def build(self) -> FakeHandDetector:
        return FakeHandDetector(self)


class FakeHandDetector:
    """``HandDetector`` that returns the configured hands scaled to each image."""

    def __init__(self, config: FakeHandDetectorConfig) -> None:
        self.config = config

    def detect(self, image: np.ndarray) -> list[Hand]:
        height, width = image.shape[:2]
        hands = dict(self.config.by_height).get(height, self.config.hands)
        return [hand.to_hand(width, height) for hand in hands]
