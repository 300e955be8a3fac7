"""``body_pose``: how much of the body is in the frame and which way the torso faces.

MediaPipe Pose (BlazePose, Bazarevsky et al., 2020) finds one person per image and returns 33
landmarks with a ``visibility`` (likelihood of being in view and not occluded) and a depth
``z`` on the scale of x (negative: nearer the camera than the hips' midpoint). Only model
complexity 1 is used: its weights ship in the wheel, while complexity 0 and 2 are fetched at
construction, which this project never does.

Scores (landmark indices of ``mediapipe.python.solutions.pose.PoseLandmark``):

- in-frame visibility of a landmark: its visibility, or 0 when it lies outside the image;
- ``body_upper_visibility``: the lower of both shoulders' (11, 12), so a shot that shows the
  shoulders, not only a head, scores high;
- ``body_full_visibility``: the lowest over shoulders, hips, knees and ankles (11, 12, 23-28),
  high only when the person is in frame head to feet;
- ``body_yaw_deg``: the turn of the torso about the vertical axis, from the vector between the
  person's left and right shoulder (and hip, each pair weighted by its lower visibility) in the
  image's x-z plane: ``atan2(dz, dx)``. 0 when the chest faces the camera (the person's left
  shoulder on the image right), +-90 in profile, +-180 from behind; positive when the torso
  turns towards image right, as ``face_pose``'s yaw. Seen from behind BlazePose must infer left
  from right by appearance, so back views are the least reliable band.

One person: in a group photo the pose may belong to someone other than the main face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from filters.arrays import Columns, floats, row_count, verdict
from filters.batch import Batch
from filters.mediapipe_graph import GRAPHS, LockedGraph, solution
from manifests import schema as S
from manifests.fingerprint import DECISION

NAME = "body_pose"
MISSING = S.reason(NAME, "missing")
NO_UPPER_BODY = S.reason(NAME, "no_upper_body")
NO_FULL_BODY = S.reason(NAME, "no_full_body")

LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP = 11, 12, 23, 24
UPPER_BODY = (LEFT_SHOULDER, RIGHT_SHOULDER)
FULL_BODY = (11, 12, 23, 24, 25, 26, 27, 28)  # shoulders, hips, knees, ankles
# The only complexity whose weights ship in the wheel (pose_landmark_full.tflite).
MODEL_COMPLEXITY = 1

WRITES = (S.BODY_UPPER_VISIBILITY, S.BODY_FULL_VISIBILITY, S.BODY_YAW_DEG)


class BodyPoseConfig(BaseModel):
    """Pose detection settings and optional framing rules (both off by default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["body_pose"] = "body_pose"
    caption_context: ClassVar[tuple[str, ...]] = (
        S.BODY_UPPER_VISIBILITY,
        S.BODY_FULL_VISIBILITY,
        S.BODY_YAW_DEG,
    )
    min_detection_confidence: float = Field(
        default=0.5, ge=0, le=1, description="MediaPipe's default for the person detector"
    )
    min_upper_body_visibility: float | None = Field(
        default=None,
        ge=0,
        le=1,
        json_schema_extra=DECISION,
        description="reject unless both shoulders are this visible (0.5 is MediaPipe's own "
        "drawing threshold, solutions/drawing_utils.py). Off by default: close-up portraits "
        "are the core of a face corpus; the score still frames the captions",
    )
    min_full_body_visibility: float | None = Field(
        default=None,
        ge=0,
        le=1,
        json_schema_extra=DECISION,
        description="reject unless shoulders to ankles are this visible: for a full-body "
        "corpus only, off by default",
    )

    def build(self) -> BodyPoseFilter:
        return BodyPoseFilter(self)


def _load(min_detection_confidence: float) -> LockedGraph:
    """The pose graph, once per process (static images, complexity 1, no segmentation)."""

    def build() -> Any:
        pose = solution("pose", "body_pose")
        return pose.Pose(
            static_image_mode=True,
            model_complexity=MODEL_COMPLEXITY,
            enable_segmentation=False,
            min_detection_confidence=min_detection_confidence,
        )

    return GRAPHS.get(("pose", min_detection_confidence), build)


def in_frame_visibility(landmarks: np.ndarray) -> np.ndarray:
    """Per landmark: visibility, or 0 outside the image (rows ``x, y, z, visibility``,
    x and y relative to the image)."""
    x, y, visibility = landmarks[:, 0], landmarks[:, 1], landmarks[:, 3]
    inside = (x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)
    return np.where(inside, visibility, 0.0)


def body_yaw_deg(landmarks: np.ndarray, width: int) -> float:
    """Torso yaw (module docstring) from landmarks with x relative to ``width`` and z on the
    scale of x; NaN when neither shoulders nor hips are visible."""
    seen = in_frame_visibility(landmarks)
    vector = np.zeros(2)
    for left, right in ((LEFT_SHOULDER, RIGHT_SHOULDER), (LEFT_HIP, RIGHT_HIP)):
        weight = min(seen[left], seen[right])
        delta = (landmarks[left, [0, 2]] - landmarks[right, [0, 2]]) * width
        vector += weight * delta / max(float(np.linalg.norm(delta)), 1e-9)
    if not np.any(vector):
        return math.nan
    return math.degrees(math.atan2(vector[1], vector[0]))


def pose_scores(landmarks: np.ndarray, width: int) -> dict[str, float]:
    """Every ``body_pose`` column from 33 landmarks (``x, y, z, visibility`` rows)."""
    seen = in_frame_visibility(landmarks)
    return {
        S.BODY_UPPER_VISIBILITY: float(seen[list(UPPER_BODY)].min()),
        S.BODY_FULL_VISIBILITY: float(seen[list(FULL_BODY)].min()),
        S.BODY_YAW_DEG: body_yaw_deg(landmarks, width),
    }


@dataclass(frozen=True)
class BodyPoseFilter:
    """Scores the person's pose; keeps every row unless a framing rule is set."""

    config: BodyPoseConfig
    name = NAME
    reads = ()
    writes = WRITES
    reasons = (NO_UPPER_BODY, NO_FULL_BODY, MISSING)
    keep_column = S.keep_column(NAME)
    expensive = True  # the pose graph per image (~58 ms): skipped for rejected rows under cheap

    def score(self, batch: Batch) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {name: [] for name in self.writes}
        for row in range(len(batch)):
            image = batch.image(row)
            landmarks = None if image is None else self.landmarks(image)
            scores = {}
            if image is not None and landmarks is not None:
                scores = pose_scores(landmarks, image.shape[1])
            for name in self.writes:
                value = scores.get(name)
                out[name].append(None if value is None or math.isnan(value) else value)
        return out

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """33 x 4 ``x, y, z, visibility`` (x, y relative to the image), None without a person."""
        found = _load(self.config.min_detection_confidence).process(image)
        if found.pose_landmarks is None:
            return None
        points = found.pose_landmarks.landmark
        return np.array([(p.x, p.y, p.z, p.visibility) for p in points], dtype=np.float64)

    def decide(self, columns: Columns) -> tuple[np.ndarray, np.ndarray]:
        rows = row_count(columns, self.writes)
        upper, full = self.config.min_upper_body_visibility, self.config.min_full_body_visibility
        checks: list[tuple[np.ndarray, str]] = []
        if upper is not None:
            upper_seen = floats(columns, S.BODY_UPPER_VISIBILITY, rows)
            checks += [(np.isnan(upper_seen), MISSING), (upper_seen < upper, NO_UPPER_BODY)]
        if full is not None:
            full_seen = floats(columns, S.BODY_FULL_VISIBILITY, rows)
            checks += [(np.isnan(full_seen), MISSING), (full_seen < full, NO_FULL_BODY)]
        return verdict(rows, checks)
