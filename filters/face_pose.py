"""``face_pose``: head roll from the eye line, yaw from landmark asymmetry or the detector.

Yaw model (weak perspective): after undoing roll, the nose tip sits ``d * sin(yaw)`` off the
face's midline while the eyes are ``e * cos(yaw)`` from it, so ``offset / half_eye_distance =
(d / e) * tan(yaw)``. Adult heads have ``d ~= e``: the nose tip stands ~32 mm in front of the
eye plane and the pupils are ~32 mm from the midline (mean interpupillary distance 63 mm,
Dodgson 2004), hence ``yaw = atan(offset / half_eye_distance)``. An approximation good to a
few degrees near frontal and monotone beyond, which is what a threshold needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from filters.arrays import Columns, floats, row_count, verdict
from filters.batch import Batch
from filters.declarations import Bound
from manifests import schema as S
from manifests.fingerprint import DECISION

NAME = "face_pose"
MISSING = S.reason(NAME, "missing")
YAW = S.reason(NAME, "yaw")
ROLL = S.reason(NAME, "roll")
PITCH = S.reason(NAME, "pitch")

# Nose-tip depth over half the interpupillary distance (module docstring).
NOSE_DEPTH_RATIO = 1.0


def roll_deg(landmarks: np.ndarray) -> float:
    """Angle of the line from the image-left eye to the image-right eye (positive: clockwise)."""
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def yaw_deg(landmarks: np.ndarray) -> float:
    """Yaw from 5 points (order of ``LANDMARK_NAMES``); positive when the nose points to image
    right."""
    eyes_mid = (landmarks[0] + landmarks[1]) / 2
    roll = math.radians(roll_deg(landmarks))
    # Undo roll: rotate all points by -roll about the eye midpoint, keep x.
    xs = (landmarks - eyes_mid) @ np.array([math.cos(roll), -math.sin(roll)])
    half_eyes = (xs[1] - xs[0]) / 2
    if half_eyes <= 0:
        return float("nan")
    midline = (0.0 + (xs[3] + xs[4]) / 2) / 2  # eye midpoint is 0; mouth midpoint beside it
    offset = xs[2] - midline
    return math.degrees(math.atan2(offset / half_eyes, NOSE_DEPTH_RATIO))


class FacePoseConfig(BaseModel):
    """Limits on how far the main face turns or tilts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["face_pose"] = "face_pose"
    published: ClassVar[tuple[str, ...]] = (S.FACE_YAW_DEG, S.FACE_ROLL_DEG, S.FACE_PITCH_DEG)
    thresholds: ClassVar[dict[str, tuple[str, Bound]]] = {
        "max_abs_yaw_deg": (S.FACE_YAW_DEG, "abs_max"),
        "max_abs_roll_deg": (S.FACE_ROLL_DEG, "abs_max"),
        "max_abs_pitch_deg": (S.FACE_PITCH_DEG, "abs_max"),
    }
    caption_context: ClassVar[tuple[str, ...]] = (S.FACE_YAW_DEG, S.FACE_ROLL_DEG, S.FACE_PITCH_DEG)
    max_abs_yaw_deg: float = Field(
        default=45.0,
        ge=0,
        json_schema_extra=DECISION,
        description="past ~45 deg the far eye is occluded and 5-point landmarks break down; "
        "frontal-to-three-quarter views suit face captions",
    )
    max_abs_roll_deg: float = Field(
        default=30.0,
        ge=0,
        json_schema_extra=DECISION,
        description="tilted heads are fine, but > 30 deg is mostly rotated images",
    )
    max_abs_pitch_deg: float = Field(
        default=40.0,
        ge=0,
        json_schema_extra=DECISION,
        description="applied only when the detector estimates pitch (insightface)",
    )
    use_detector_pose: bool = Field(
        default=True,
        description="prefer the detector's yaw/pitch (a 3D fit) over the 5-point estimate",
    )

    def build(self) -> FacePoseFilter:
        return FacePoseFilter(self)


@dataclass(frozen=True)
class FacePoseFilter:
    """Rejects profile views and strongly tilted or rotated faces."""

    config: FacePoseConfig
    name = NAME
    reads = (S.FACE_LANDMARKS, S.FACE_POSES, S.FACE_INDEX)
    writes = (S.FACE_YAW_DEG, S.FACE_ROLL_DEG, S.FACE_PITCH_DEG)
    reasons = (YAW, ROLL, PITCH, MISSING)
    keep_column = S.keep_column(NAME)

    def score(self, batch: Batch) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {name: [] for name in self.writes}
        landmarks, poses = batch.column(S.FACE_LANDMARKS), batch.column(S.FACE_POSES)
        rows = zip(landmarks, poses, batch.column(S.FACE_INDEX), strict=True)
        for row_landmarks, row_poses, index in rows:
            yaw, roll, pitch = self._main_pose(row_landmarks, row_poses, index)
            out[S.FACE_YAW_DEG].append(yaw)
            out[S.FACE_ROLL_DEG].append(roll)
            out[S.FACE_PITCH_DEG].append(pitch)
        return out

    def _main_pose(
        self, landmarks: list[Any] | None, poses: list[Any] | None, index: int | None
    ) -> tuple[float | None, float | None, float | None]:
        """(yaw, roll, pitch) of the main face; None where unknown."""
        if landmarks is None or index is None:
            return None, None, None
        points = np.asarray(landmarks[index], dtype=np.float64)
        yaw, pitch = yaw_deg(points), None
        detected = poses[index] if poses is not None else None
        if self.config.use_detector_pose and detected is not None:
            yaw, pitch = float(detected[0]), float(detected[1])
        return (None if math.isnan(yaw) else yaw), roll_deg(points), pitch

    def decide(self, columns: Columns) -> tuple[np.ndarray, np.ndarray]:
        rows = row_count(columns, self.writes)
        yaw = np.abs(floats(columns, S.FACE_YAW_DEG, rows))
        roll = np.abs(floats(columns, S.FACE_ROLL_DEG, rows))
        pitch = np.abs(floats(columns, S.FACE_PITCH_DEG, rows))  # NaN: unknown, not checked
        return verdict(
            rows,
            [
                (np.isnan(yaw) | np.isnan(roll), MISSING),
                (yaw > self.config.max_abs_yaw_deg, YAW),
                (roll > self.config.max_abs_roll_deg, ROLL),
                (pitch > self.config.max_abs_pitch_deg, PITCH),
            ],
        )
