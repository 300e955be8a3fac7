"""The ``FaceDetector`` protocol and the ``Face`` value every backend returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np

Point = tuple[float, float]
Landmarks = tuple[Point, Point, Point, Point, Point]

# Landmark order, as seen in the image (left = smaller x for an upright frontal face).
# It is the InsightFace / ArcFace 5-point order, so SCRFD keypoints pass through unchanged.
LANDMARK_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class Face:
    """One detected face, in pixel coordinates of the image given to ``detect``.

    ``box`` is ``(x0, y0, x1, y1)`` and may extend past the image border. ``confidence`` is in
    [0, 1] with 0.5 at the backend's own default detection threshold. ``landmarks`` holds five
    ``(x, y)`` points in ``LANDMARK_NAMES`` order. ``pose`` is ``(yaw, pitch, roll)`` in degrees
    when the backend estimates it; ``age`` in years and ``gender`` (``"M"``/``"F"``) likewise.
    """

    box: tuple[float, float, float, float]
    confidence: float
    landmarks: Landmarks
    pose: tuple[float, float, float] | None = None
    age: float | None = None
    gender: str | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    def rescaled(self, factor_x: float, factor_y: float) -> Face:
        """This face with x coordinates multiplied by ``factor_x`` and y by ``factor_y``.

        Pose, age and gender do not depend on the image size and are kept as they are.
        """
        x0, y0, x1, y1 = self.box
        box = (x0 * factor_x, y0 * factor_y, x1 * factor_x, y1 * factor_y)
        points = cast(Landmarks, tuple((x * factor_x, y * factor_y) for x, y in self.landmarks))
        return Face(box, self.confidence, points, self.pose, self.age, self.gender)


class FaceDetector(Protocol):
    """Finds faces in one RGB image (H x W x 3, uint8)."""

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces the backend accepts at its configured threshold, in any order."""
        ...


class MissingModelError(FileNotFoundError):
    """A configured model file or pack is not where the config says (nothing is downloaded)."""


def as_landmarks(points: np.ndarray) -> Landmarks:
    """Five ``(x, y)`` tuples of Python floats from a 5 x 2 array."""
    if points.shape != (5, 2):
        raise ValueError(f"expected 5 x 2 landmarks, got {points.shape}")
    return cast(Landmarks, tuple((float(x), float(y)) for x, y in points))


def main_face_index(faces: list[Face], min_confidence: float) -> int | None:
    """Index of the largest face (by box area) with ``confidence >= min_confidence``."""
    best: int | None = None
    best_area = -1.0
    for i, face in enumerate(faces):
        area = max(face.width, 0.0) * max(face.height, 0.0)
        if face.confidence >= min_confidence and area > best_area:
            best, best_area = i, area
    return best
