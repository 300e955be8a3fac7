"""A scripted ``FaceDetector`` for tests and dry runs: returns the faces its config lists."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from filters.detectors.base import Face, as_landmarks

# ArcFace's 112 x 112 alignment template (insightface utils/face_align.py), as fractions of the
# box: a frontal, upright face, so pose estimated from these points is ~0.
_TEMPLATE = (
    np.array(
        [
            [38.2946, 51.6963],
            [73.5318, 51.5014],
            [56.0252, 71.7366],
            [41.5493, 92.3655],
            [70.7299, 92.2041],
        ]
    )
    / 112.0
)


class FakeFaceConfig(BaseModel):
    """One scripted face; its box is given in fractions of the image width and height."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    box: tuple[float, float, float, float] = (0.3, 0.2, 0.7, 0.6)
    confidence: float = 0.9
    pose: tuple[float, float, float] | None = None
    age: float | None = None
    gender: str | None = None

    def to_face(self, width: int, height: int) -> Face:
        x0, y0, x1, y1 = self.box
        box = (x0 * width, y0 * height, x1 * width, y1 * height)
        points = np.array([box[0], box[1]]) + _TEMPLATE * np.array(
            [box[2] - box[0], box[3] - box[1]]
        )
        return Face(box, self.confidence, as_landmarks(points), self.pose, self.age, self.gender)


class FakeDetectorConfig(BaseModel):
    """Scripted detector: ``by_height`` picks faces by image height, else ``faces``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["fake"] = "fake"
    faces: tuple[FakeFaceConfig, ...] = Field(
        default=(FakeFaceConfig(),),
        description="default: one centred frontal face, 40% of the image",
    )
    by_height: tuple[tuple[int, tuple[FakeFaceConfig, ...]], ...] = Field(
        default=(), description="(image height px, faces) pairs: lets a test script each image"
    )

    def build(self) -> FakeDetector:
        return FakeDetector(self)


class FakeDetector:
    """``FaceDetector`` that returns the configured faces scaled to each image."""

    def __init__(self, config: FakeDetectorConfig) -> None:
        self.config = config

    def detect(self, image: np.ndarray) -> list[Face]:
        height, width = image.shape[:2]
        faces = dict(self.config.by_height).get(height, self.config.faces)
        return [face.to_face(width, height) for face in faces]
