"""Contract tests over every registered face detector, and backend specifics."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from filters.detectors import (
    DETECTORS,
    DlibDetectorConfig,
    Face,
    FakeDetectorConfig,
    FakeFaceConfig,
    InsightFaceDetectorConfig,
    MediaPipeDetectorConfig,
    MissingModelError,
)
from filters.detectors.dlib_detector import default_models_dir, margin_to_confidence
from filters.face_count import build_detector

# A pack for the real InsightFace path: set LAIONFACE_INSIGHTFACE_ROOT to its model root.
INSIGHTFACE_ROOT = Path(os.environ.get("LAIONFACE_INSIGHTFACE_ROOT", "~/.insightface"))
# Built without validation: without a pack the config is refused, and the contract test skips.
INSIGHTFACE = InsightFaceDetectorConfig.model_construct(
    model_root=INSIGHTFACE_ROOT, providers=("CPUExecutionProvider",)
)
HAS_PACK = any(INSIGHTFACE.pack_dir().glob("*.onnx"))


def detector_configs() -> dict[str, object]:
    return {
        "dlib": DlibDetectorConfig(),
        "insightface": INSIGHTFACE,
        "fake": FakeDetectorConfig(),
        "mediapipe": MediaPipeDetectorConfig(),
    }


def check_face(face: Face, width: int, height: int) -> None:
    """Protocol invariants: a sane box, confidence in [0, 1], 5 landmarks in LANDMARK_NAMES
    order on an upright frontal face."""
    x0, y0, x1, y1 = face.box
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    assert 0.0 <= face.confidence <= 1.0
    (lex, ley), (rex, rey), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    assert lex < nx < rex and mlx < mrx  # image left before image right
    assert max(ley, rey) < ny < min(mly, mry)  # eyes above nose above mouth
    assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in face.landmarks)


def test_registry_lists_every_backend() -> None:
    assert set(DETECTORS) == set(detector_configs()) == {"dlib", "insightface", "fake", "mediapipe"}


@pytest.mark.parametrize("key", ["dlib", "insightface", "fake", "mediapipe"])
def test_detector_contract(key: str, photos: dict[str, np.ndarray]) -> None:
    if key == "insightface" and not HAS_PACK:
        pytest.skip(f"no InsightFace pack at {INSIGHTFACE.pack_dir()}")
    config = detector_configs()[key]
    detector = build_detector(config)  # type: ignore[arg-type]
    assert build_detector(config) is detector  # once per process and config
    image = photos["astronaut"]
    faces = detector.detect(image)
    assert len(faces) == 1
    check_face(faces[0], image.shape[1], image.shape[0])
    if key != "fake":
        assert detector.detect(photos["coffee"]) == []
    blank = detector.detect(np.zeros((64, 64, 3), dtype=np.uint8))
    assert len(blank) == (1 if key == "fake" else 0)  # the fake returns its script anywhere


def test_dlib_weights_are_found_without_importing_their_package() -> None:
    assert (default_models_dir() / "shape_predictor_68_face_landmarks.dat").is_file()
    build_detector(DlibDetectorConfig()).detect(np.zeros((90, 90, 3), dtype=np.uint8))
    # Its __init__ imports pkg_resources, which current setuptools no longer ships.
    assert "face_recognition_models" not in sys.modules


def test_dlib_boxes_map_back_after_shrinking(photos: dict[str, np.ndarray]) -> None:
    full = build_detector(DlibDetectorConfig()).detect(photos["grace_hopper"])[0]
    shrunk = build_detector(DlibDetectorConfig(max_side_px=300)).detect(photos["grace_hopper"])
    assert len(shrunk) == 1
    assert np.allclose(shrunk[0].box, full.box, atol=0.1 * full.width)


def test_dlib_cnn_finds_the_face(photos: dict[str, np.ndarray]) -> None:
    crop = np.ascontiguousarray(photos["astronaut"][20:230, 120:330])  # CNN is ~2 s per 512 px
    faces = build_detector(DlibDetectorConfig(model="cnn")).detect(crop)
    assert len(faces) == 1
    check_face(faces[0], crop.shape[1], crop.shape[0])


def test_margin_maps_dlib_threshold_to_one_half() -> None:
    assert margin_to_confidence(0.0) == 0.5
    assert margin_to_confidence(1.534) == pytest.approx(0.8226, abs=1e-4)


def test_insightface_pack_that_vanished_after_validation_names_the_directory(
    tmp_path: Path,
) -> None:
    config = InsightFaceDetectorConfig.model_construct(model_root=tmp_path, pack="buffalo_l")
    with pytest.raises(MissingModelError, match=re.escape(str(tmp_path / "models" / "buffalo_l"))):
        config.build()


def test_dlib_models_that_vanished_after_validation_are_a_clear_error(tmp_path: Path) -> None:
    detector = DlibDetectorConfig.model_construct(models_dir=tmp_path).build()
    with pytest.raises(MissingModelError, match=r"shape_predictor_68_face_landmarks\.dat"):
        detector.detect(np.zeros((90, 90, 3), dtype=np.uint8))


def test_fake_detector_scales_and_scripts_faces() -> None:
    config = FakeDetectorConfig(
        faces=(FakeFaceConfig(box=(0.25, 0.25, 0.75, 0.75), pose=(10.0, 5.0, 1.0), age=30.0),),
        by_height=((50, ()),),
    )
    detector = config.build()
    (face,) = detector.detect(np.zeros((200, 100, 3), dtype=np.uint8))
    assert face.box == (25.0, 50.0, 75.0, 150.0)
    assert face.pose == (10.0, 5.0, 1.0) and face.age == 30.0
    check_face(face, 100, 200)
    assert detector.detect(np.zeros((50, 100, 3), dtype=np.uint8)) == []


def test_insightface_results_convert_to_faces() -> None:
    """Conversion from InsightFace's own Face record (runs without a model pack)."""
    from insightface.app.common import Face as InsightFace

    from filters.detectors.insightface_detector import _to_face

    kps = np.array([[40, 50], [60, 50], [50, 60], [42, 70], [58, 70]], dtype=np.float32)
    found = InsightFace(
        bbox=np.array([30, 35, 70, 80], dtype=np.float32),
        kps=kps,
        det_score=np.float32(0.875),
        pose=np.array([5.0, -20.0, 2.0], dtype=np.float32),  # pitch, yaw, roll
        age=31,
        gender=1,
    )
    face = _to_face(found)
    assert face.box == (30.0, 35.0, 70.0, 80.0) and face.confidence == 0.875
    assert face.pose == (-20.0, 5.0, 2.0) and face.age == 31.0 and face.gender == "M"
    check_face(face, 100, 100)
