"""``face_mesh``: eyes, mouth, smile, gaze and head pose of the main face from MediaPipe's mesh.

MediaPipe Face Mesh (Kartynnik et al., 2019, "Real-time Facial Surface Geometry from Monocular
Video on Mobile GPUs") fits 468 points, plus 10 iris points with ``refine_landmarks``
(Ablavatski et al., 2020), to a face crop. The mesh runs on a square crop around the main face
box that ``face_count`` chose, so its scores describe that face even in a group photo. Indices
below are MediaPipe's canonical mesh (``canonical_face_model_uv_visualization.png``); "left" and
"right" in column names are as seen in the image, like ``LANDMARK_NAMES``.

Formulas (points in pixels; distances 2D unless said otherwise):

- eye openness: the eye aspect ratio, EAR = (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|)
  (Soukupová & Čech, "Real-Time Eye Blink Detection using Facial Landmarks", CVWW 2016);
  open eyes measure ~0.25-0.35 and their blink threshold is ~0.2.
- mouth open: inner-lip gap over mouth width, |p13 - p14| / |p61 - p291| (the mouth aspect
  ratio used for yawn detection, e.g. Abtahi et al., YawDD 2014); 0 when the lips touch.
- smile: mouth width over outer eye-corner distance, |p61 - p291| / |p33 - p263|. Smiling
  pulls the mouth corners apart (zygomaticus major, FACS AU12: Ekman & Friesen 1978), and the
  ratio is invariant to scale and in-plane rotation.
- gaze: iris centre (468, 473) offset from the middle of its eye, along the eye-corner line
  (x) and across it towards the lower lid (y), over half the eye's width, averaged over both
  eyes: 0 is centred, +-1 at a corner; positive x: towards image right, positive y: down.
- head pose: the face's axes from the mesh's 3D points (x: outer eye corner 33 -> 263, y:
  forehead 10 -> chin 152, z = x cross y), in MediaPipe's camera frame (x right, y down,
  z away from the camera, z on the scale of x). Yaw is positive when the nose points to
  image right (as ``face_pose``), pitch positive when it points up, roll is the eye line's
  angle (positive clockwise).
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

NAME = "face_mesh"
MISSING = S.reason(NAME, "missing")
EYES_CLOSED = S.reason(NAME, "eyes_closed")

# EAR points p1..p6 (Soukupová & Čech's order: corner, two upper lid, corner, two lower lid).
IMAGE_LEFT_EYE = (33, 160, 158, 133, 153, 144)  # the subject's right eye
IMAGE_RIGHT_EYE = (263, 387, 385, 362, 380, 373)  # the subject's left eye
# Iris centre, both eye corners, upper and lower lid middle, per eye (image left first).
IRISES = ((468, 33, 133, 159, 145), (473, 362, 263, 386, 374))
LIP_UPPER_INNER, LIP_LOWER_INNER = 13, 14
MOUTH_LEFT, MOUTH_RIGHT = 61, 291
EYE_OUTER_LEFT, EYE_OUTER_RIGHT = 33, 263
FOREHEAD, CHIN = 10, 152
# 468 mesh points + 2 x 5 iris points (refine_landmarks=True).
REFINED_POINTS = 478

WRITES = (
    S.FACE_EYE_OPENNESS_LEFT, S.FACE_EYE_OPENNESS_RIGHT, S.FACE_EYE_OPENNESS,
    S.FACE_MOUTH_OPEN, S.FACE_SMILE, S.FACE_GAZE_X, S.FACE_GAZE_Y,
    S.FACE_MESH_YAW_DEG, S.FACE_MESH_PITCH_DEG, S.FACE_MESH_ROLL_DEG,
)  # fmt: skip


class FaceMeshConfig(BaseModel):
    """Where the mesh looks and an optional closed-eyes rule."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["face_mesh"] = "face_mesh"
    caption_context: ClassVar[tuple[str, ...]] = (
        S.FACE_EYE_OPENNESS_LEFT,
        S.FACE_EYE_OPENNESS_RIGHT,
        S.FACE_MOUTH_OPEN,
        S.FACE_SMILE,
        S.FACE_GAZE_X,
        S.FACE_MESH_YAW_DEG,
    )
    crop_scale: float = Field(
        default=2.0,
        ge=1.0,
        description="side of the square crop around the main face box, in box sides: the "
        "mesh's own detector (BlazeFace short range) needs context around a tight box",
    )
    min_detection_confidence: float = Field(
        default=0.5, ge=0, le=1, description="MediaPipe's default for the mesh's face detector"
    )
    min_eye_openness: float | None = Field(
        default=None,
        ge=0,
        json_schema_extra=DECISION,
        description="reject when the more closed eye's EAR is below it (0.2: Soukupová & "
        "Čech's blink threshold). Off by default: closed eyes are a real expression that the "
        "captions name, not a defect; set it for an eyes-open corpus (rows without a mesh "
        "are then rejected as missing)",
    )

    def build(self) -> FaceMeshFilter:
        return FaceMeshFilter(self)


def _load(min_detection_confidence: float) -> LockedGraph:
    """The mesh graph, once per process: static images, one face, iris points on."""

    def build() -> Any:
        face_mesh = solution("face_mesh", "face_mesh")
        return face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=min_detection_confidence,
        )

    return GRAPHS.get(("face_mesh", min_detection_confidence), build)


def crop_box(
    box: tuple[float, float, float, float], scale: float, width: int, height: int
) -> tuple[int, int, int, int]:
    """Integer ``(x0, y0, x1, y1)`` of the square of side ``scale`` x the box's longer side,
    centred on the box, clipped to the image."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = scale * max(box[2] - box[0], box[3] - box[1]) / 2
    x0, y0 = max(0, math.floor(cx - half)), max(0, math.floor(cy - half))
    x1, y1 = min(width, math.ceil(cx + half)), min(height, math.ceil(cy + half))
    return x0, y0, x1, y1


def _box(value: Any) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in value)
    return x0, y0, x1, y1


def eye_aspect_ratio(points: np.ndarray, eye: tuple[int, ...]) -> float:
    """Soukupová & Čech's EAR of one eye (module docstring)."""
    p1, p2, p3, p4, p5, p6 = (points[i, :2] for i in eye)
    width = float(np.linalg.norm(p1 - p4))
    lids = float(np.linalg.norm(p2 - p6) + np.linalg.norm(p3 - p5))
    return lids / (2 * width) if width > 0 else math.nan


def _ratio(points: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> float:
    """|a0 - a1| / |b0 - b1| in the image plane (NaN for a degenerate denominator)."""
    top = float(np.linalg.norm(points[a[0], :2] - points[a[1], :2]))
    bottom = float(np.linalg.norm(points[b[0], :2] - points[b[1], :2]))
    return top / bottom if bottom > 0 else math.nan


def mouth_open(points: np.ndarray) -> float:
    """Inner-lip gap over mouth width."""
    return _ratio(points, (LIP_UPPER_INNER, LIP_LOWER_INNER), (MOUTH_LEFT, MOUTH_RIGHT))


def smile(points: np.ndarray) -> float:
    """Mouth width over outer eye-corner distance."""
    return _ratio(points, (MOUTH_LEFT, MOUTH_RIGHT), (EYE_OUTER_LEFT, EYE_OUTER_RIGHT))


def gaze(points: np.ndarray) -> tuple[float, float]:
    """Iris offset ``(x, y)`` from the eye's middle, in half eye widths, mean of both eyes."""
    offsets = []
    for iris, corner_a, corner_b, upper, lower in IRISES:
        a, b = points[corner_a, :2], points[corner_b, :2]
        if a[0] > b[0]:
            a, b = b, a  # measure along image left -> right
        half = float(np.linalg.norm(b - a)) / 2
        if half <= 0:
            return math.nan, math.nan
        along = (b - a) / (2 * half)
        across = np.array([-along[1], along[0]])  # along rotated +90 deg: image down
        middle = (a + b + points[upper, :2] + points[lower, :2]) / 4
        offset = points[iris, :2] - middle
        offsets.append((float(offset @ along) / half, float(offset @ across) / half))
    x, y = np.mean(offsets, axis=0)
    return float(x), float(y)


def head_pose(points: np.ndarray) -> tuple[float, float, float]:
    """``(yaw, pitch, roll)`` in degrees from the mesh's 3D points (module docstring)."""
    x = points[EYE_OUTER_RIGHT] - points[EYE_OUTER_LEFT]
    y = points[CHIN] - points[FOREHEAD]
    x_hat = x / np.linalg.norm(x)
    y_perp = y - (y @ x_hat) * x_hat
    y_hat = y_perp / np.linalg.norm(y_perp)
    z_hat = np.cross(x_hat, y_hat)  # into the scene for an upright frontal face
    forward = -z_hat  # where the nose points
    yaw = math.degrees(math.atan2(forward[0], -forward[2]))
    pitch = math.degrees(math.atan2(-forward[1], math.hypot(forward[0], forward[2])))
    roll = math.degrees(math.atan2(x_hat[1], x_hat[0]))
    return yaw, pitch, roll


def mesh_scores(points: np.ndarray) -> dict[str, float]:
    """Every ``face_mesh`` column from 478 mesh points (pixels; z on the scale of x)."""
    left = eye_aspect_ratio(points, IMAGE_LEFT_EYE)
    right = eye_aspect_ratio(points, IMAGE_RIGHT_EYE)
    gaze_x, gaze_y = gaze(points)
    yaw, pitch, roll = head_pose(points)
    return {
        S.FACE_EYE_OPENNESS_LEFT: left,
        S.FACE_EYE_OPENNESS_RIGHT: right,
        S.FACE_EYE_OPENNESS: min(left, right),
        S.FACE_MOUTH_OPEN: mouth_open(points),
        S.FACE_SMILE: smile(points),
        S.FACE_GAZE_X: gaze_x,
        S.FACE_GAZE_Y: gaze_y,
        S.FACE_MESH_YAW_DEG: yaw,
        S.FACE_MESH_PITCH_DEG: pitch,
        S.FACE_MESH_ROLL_DEG: roll,
    }


@dataclass(frozen=True)
class FaceMeshFilter:
    """Scores the main face's mesh; rejects closed eyes only when ``min_eye_openness`` is set."""

    config: FaceMeshConfig
    name = NAME
    reads = (S.FACE_BOX,)
    writes = WRITES
    reasons = (EYES_CLOSED, MISSING)
    keep_column = S.keep_column(NAME)
    expensive = True  # a mesh graph per face: skipped for rejected rows under `cheap`

    def score(self, batch: Batch) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {name: [] for name in self.writes}
        boxes = batch.column(S.FACE_BOX)
        for row in range(len(batch)):
            image, box = batch.image(row), boxes[row]
            points = None if image is None or box is None else self.mesh(image, box)
            scores = mesh_scores(points) if points is not None else {}
            for name in self.writes:
                value = scores.get(name)
                out[name].append(None if value is None or math.isnan(value) else value)
        return out

    def mesh(self, image: np.ndarray, box: Any) -> np.ndarray | None:
        """478 x 3 mesh points of the face in ``box``, in image pixels; None when not found."""
        height, width = image.shape[:2]
        x0, y0, x1, y1 = crop_box(_box(box), self.config.crop_scale, width, height)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        graph = _load(self.config.min_detection_confidence)
        found = graph.process(image[y0:y1, x0:x1])
        faces = found.multi_face_landmarks or ()
        if not faces or len(faces[0].landmark) < REFINED_POINTS:
            return None
        rel = np.array([(p.x, p.y, p.z) for p in faces[0].landmark], dtype=np.float64)
        # MediaPipe normalizes x by the crop width, y by its height, z on the scale of x.
        scale = np.array([x1 - x0, y1 - y0, x1 - x0], dtype=np.float64)
        return rel * scale + np.array([x0, y0, 0.0])

    def decide(self, columns: Columns) -> tuple[np.ndarray, np.ndarray]:
        rows = row_count(columns, self.writes)
        threshold = self.config.min_eye_openness
        if threshold is None:
            return verdict(rows, [])
        openness = floats(columns, S.FACE_EYE_OPENNESS, rows)
        return verdict(rows, [(np.isnan(openness), MISSING), (openness < threshold, EYES_CLOSED)])
