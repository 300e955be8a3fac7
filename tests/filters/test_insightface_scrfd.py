"""The InsightFace backend end to end, through insightface's own loader, on a tiny SCRFD pack.

The pack (``tests/filters/insightface_pack.py``) is laid out as buffalo_l is, with a detector
whose scores fire exactly on stride-32 cells of saturated red, and landmark and age/gender
models with constant outputs. So the asserted boxes, landmarks, scores, thresholds, detection
size, device id, pose and age are plumbing through ``FaceAnalysis``, SCRFD's decoding and NMS,
insightface's pose fit and attribute reading, never a model's semantics.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from filters import Batch, FaceCountConfig
from filters.detectors import Face, InsightFaceDetectorConfig, MissingModelError
from filters.detectors.base import as_landmarks
from filters.detectors.insightface_detector import _load
from filters.face_count import build_detector
from manifests import schema as S
from tests.filters.conftest import encode
from tests.filters.insightface_pack import (
    KEYPOINTS,
    genderage_model,
    landmark_3d_68_model,
    red_logit,
    scrfd_model,
    sigmoid,
    write_pack,
)

CELL = 32  # the firing stride, in pixels of the detector's input
RED, RED_208, RED_176, BLUE = (255, 0, 0), (208, 0, 0), (176, 0, 0), (0, 0, 255)
AGE, GENDER = 31.0, "M"  # genderage_model((0, 1), 31): argmax 1 is male in insightface
PITCH, YAW, ROLL = 10.0, -20.0, 5.0  # the landmark model's head pose
POSE = (YAW, PITCH, ROLL)  # Face.pose order
MODULES = ["detection", "genderage", "landmark_3d_68"]


@pytest.fixture(scope="module")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("insightface")
    models = {
        "det_10g.onnx": scrfd_model(),
        "1k3d68.onnx": landmark_3d_68_model(PITCH, YAW, ROLL),
        "genderage.onnx": genderage_model((0.0, 1.0), AGE),
    }
    write_pack(root, "buffalo_l", models)
    return root


@pytest.fixture(autouse=True)
def cpu_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU worker (no visible GPU), whatever the machine: insightface's ctx_id is -1."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


def config(root: Path, **extra: object) -> InsightFaceDetectorConfig:
    """Validated like a YAML section; the default pack, modules and providers (CUDA first)."""
    return InsightFaceDetectorConfig.model_validate({"model_root": root, **extra})


def cells_image() -> np.ndarray:
    """640 x 480 black, with 64-px squares (one detection cell at det_size 320) of red 255
    at cell (row 1, col 1), red 208 at (1, 3), red 176 at (3, 2) and blue at (2, 4)."""
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    for (row, col), rgb in {(1, 1): RED, (1, 3): RED_208, (3, 2): RED_176, (2, 4): BLUE}.items():
        image[64 * row : 64 * row + 64, 64 * col : 64 * col + 64] = rgb
    return image


def cell_face(x0: float, y0: float, size: float, rgb: tuple[int, int, int]) -> Face:
    """The face the tiny detector reports for a cell at ``(x0, y0)``, ``size`` image px wide."""
    points = as_landmarks(np.array([(x0 + size * dx, y0 + size * dy) for dx, dy in KEYPOINTS]))
    return Face(
        box=(x0, y0, x0 + size, y0 + size),
        confidence=sigmoid(red_logit(rgb)),
        landmarks=points,
        pose=POSE,
        age=AGE,
        gender=GENDER,
    )


def assert_faces(found: list[Face], expected: list[Face]) -> None:
    assert len(found) == len(expected)
    for face, want in zip(found, expected, strict=True):
        assert face.box == pytest.approx(want.box, abs=1e-4)
        assert [c for p in face.landmarks for c in p] == pytest.approx(
            [c for p in want.landmarks for c in p], abs=1e-4
        )
        assert face.confidence == pytest.approx(want.confidence, abs=1e-6)
        assert face.pose == pytest.approx(want.pose, abs=1e-3)
        assert (face.age, face.gender) == (want.age, want.gender)


def test_boxes_landmarks_scores_and_device_through_insightface(
    model_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(model_root, det_size=320)
    with caplog.at_level(logging.INFO, logger="filters.detectors.insightface_detector"):
        faces = cfg.build().detect(cells_image())
    # det_size 320 halves the 640 px image: one 32 px cell per 64 px square. Red 176 scores
    # sigmoid(-1) < 0.5 and blue nothing (it would fire, and red not, were RGB passed as BGR).
    assert_faces(faces, [cell_face(64, 64, 64, RED), cell_face(192, 64, 64, RED_208)])
    assert faces[0].confidence == pytest.approx(sigmoid(3.9375), abs=1e-6)
    app = _load(cfg)
    assert sorted(app.models) == MODULES
    detector = app.det_model
    assert (detector.input_size, detector.det_thresh, detector.nms_thresh) == ((320, 320), 0.5, 0.4)
    assert (detector.fmc, detector.use_kps) == (3, True)  # 3 strides with keypoints: 9 outputs
    assert detector.session.get_providers() == ["CPUExecutionProvider"]
    assert caplog.messages == [
        f"InsightFace {model_root}/models/buffalo_l: modules {MODULES}, "
        "providers ['CPUExecutionProvider'], ctx_id -1, det_size (320, 320), det_thresh 0.5"
    ]


def test_det_thresh_admits_the_weaker_cell(model_root: Path) -> None:
    faces = config(model_root, det_size=320, det_thresh=0.25).build().detect(cells_image())
    expected = [cell_face(x, y, 64, rgb) for x, y, rgb in [(64, 64, RED), (192, 64, RED_208)]]
    assert_faces(faces, [*expected, cell_face(128, 192, 64, RED_176)])
    assert faces[2].confidence == pytest.approx(sigmoid(-1.0), abs=1e-6)


def test_det_size_sets_the_detection_cell(model_root: Path) -> None:
    """At det_size 640 the image is not scaled: each 64 px square is 2 x 2 cells of 32 px,
    four faces per square, listed by score, then in SCRFD's row-major anchor order."""
    faces = config(model_root, det_size=640).build().detect(cells_image())
    corners = [(0, 0), (32, 0), (0, 32), (32, 32)]
    expected = [
        cell_face(x0 + dx, 64 + dy, 32, rgb)
        for x0, rgb in [(64, RED), (192, RED_208)]
        for dx, dy in corners
    ]
    assert_faces(faces, expected)
    assert _load(config(model_root, det_size=640)).det_model.input_size == (640, 640)


def test_face_count_filter_with_insightface_on_demo_photos(
    model_root: Path, photos: dict[str, np.ndarray]
) -> None:
    """The astronaut (512 px) with one detection cell painted red: det_size 320 scales by
    0.625, so the cell (row 2, col 5) is image px 256..307.2 x 102.4..153.6; the painted square
    overlaps it by a few px so that bilinear resizing keeps the whole cell pure red."""
    painted = photos["astronaut"].copy()
    painted[100:156, 254:310] = RED
    detector = config(model_root, det_size=320)
    face_count = FaceCountConfig(detector=detector).build()
    batch = Batch.from_bytes(
        [encode(painted), encode(photos["astronaut"]), encode(photos["coffee"])]
    )
    columns = face_count.score(batch)
    keep, reasons = face_count.decide(columns)
    assert keep.tolist() == [True, False, False]
    assert reasons.tolist() == [None, "face_count:zero", "face_count:zero"]
    assert columns[S.FACE_COUNT] == [1, 0, 0] and columns[S.FACE_INDEX] == [0, None, None]
    assert columns[S.FACE_BOX][0] == pytest.approx([256.0, 102.4, 307.2, 153.6], abs=1e-4)
    assert columns[S.FACE_CONFIDENCE][0] == pytest.approx(sigmoid(3.9375), abs=1e-6)
    assert (columns[S.FACE_AGE][0], columns[S.FACE_GENDER][0]) == (AGE, GENDER)
    assert columns[S.FACE_POSES][0][0] == pytest.approx(list(POSE), abs=1e-3)
    assert columns[S.FACE_POSES][1:] == [[], []]
    assert build_detector(detector) is build_detector(detector)  # loaded once per process


def test_pack_without_a_detector_is_a_one_line_error(tmp_path: Path) -> None:
    pack_dir = write_pack(tmp_path, "my_pack", {"genderage.onnx": genderage_model((1, 0), 40)})
    cfg = config(tmp_path, pack="my_pack")  # validation sees an .onnx file and passes
    with pytest.raises(MissingModelError) as caught:
        cfg.build()
    assert str(caught.value) == (
        "InsightFace pack 'my_pack' has no face detector: none of its models (genderage.onnx) "
        f"in {pack_dir} is a face detector (an SCRFD or RetinaFace .onnx with 5 or more "
        "outputs); set model_root (and pack) to a pack with one (nothing is downloaded)"
    )
