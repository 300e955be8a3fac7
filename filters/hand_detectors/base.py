"""The ``HandDetector`` protocol and the ``Hand`` value every backend returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

Point = tuple[float, float]
Handedness = Literal["left", "right"]

# The 21 hand keypoints, in the order MediaPipe Hands (mediapipe/python/solutions/hands.py,
# HandLandmark) and COCO-WholeBody's hand annotation (Jin et al. 2020) share: the wrist, then
# four joints per finger from the palm to the tip, thumb to pinky.
HAND_LANDMARK_NAMES: tuple[str, ...] = (
    "wrist",
    *(f"{finger}_{joint}" for finger in ("thumb",) for joint in ("cmc", "mcp", "ip", "tip")),
    *(
        f"{finger}_{joint}"
        for finger in ("index", "middle", "ring", "pinky")
        for joint in ("mcp", "pip", "dip", "tip")
    ),
)
HAND_POINTS = len(HAND_LANDMARK_NAMES)  # 21


@dataclass(frozen=True)
class Hand:
    """One detected hand, in pixel coordinates of the image given to ``detect``.

    ``landmarks`` holds 21 ``(x, y)`` points in ``HAND_LANDMARK_NAMES`` order; they may lie
    outside the image when the hand is cut off (the models extrapolate). ``box`` is the box of
    the landmarks, ``(x0, y0, x1, y1)``. ``confidence`` is in [0, 1]; what it measures is the
    backend's (its docstring says). ``handedness`` is the person's own left or right hand, None
    when the backend cannot tell.
    """

    landmarks: tuple[Point, ...]
    confidence: float
    handedness: Handedness | None = None

    def __post_init__(self) -> None:
        if len(self.landmarks) != HAND_POINTS:
            raise ValueError(f"a hand has {HAND_POINTS} landmarks, got {len(self.landmarks)}")

    @property
    def box(self) -> tuple[float, float, float, float]:
        xs = [x for x, _ in self.landmarks]
        ys = [y for _, y in self.landmarks]
        return (min(xs), min(ys), max(xs), max(ys))

    @property
    def size_px(self) -> float:
        """The longer side of ``box``: a hand seen edge-on keeps its length, not its width."""
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, y1 - y0)

    def rescaled(self, scale_x: float, scale_y: float) -> Hand:
        """This hand with x and y multiplied by the factors (undo a detection resize:
        ``DetectionCopy.to_full``)."""
        points = tuple((x * scale_x, y * scale_y) for x, y in self.landmarks)
        return Hand(points, self.confidence, self.handedness)

    def inside(self, width: int, height: int) -> bool:
        """Whether every landmark lies inside a ``width`` x ``height`` frame."""
        return all(0 <= x <= width and 0 <= y <= height for x, y in self.landmarks)


def as_hand_points(points: np.ndarray | Sequence[Sequence[float]]) -> tuple[Point, ...]:
    """21 ``(x, y)`` tuples of Python floats from a 21 x 2 array (more columns are ignored)."""
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] != HAND_POINTS or array.shape[1] < 2:
        raise ValueError(f"expected {HAND_POINTS} x 2 hand landmarks, got {array.shape}")
    return tuple((float(x), float(y)) for x, y in array[:, :2])


class HandDetector(Protocol):
    """Finds hands in one RGB image (H x W x 3, uint8)."""

    def detect(self, image: np.ndarray) -> list[Hand]:
        """All hands the backend accepts at its configured thresholds, in any order."""
        ...
