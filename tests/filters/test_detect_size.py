"""Detection on a bounded copy (``filter.detect_max_side``): results in full-resolution pixels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import filters.batch
from filters import (
    Batch,
    FaceCountConfig,
    FaceSharpnessConfig,
    HandsConfig,
    ImageFilterConfig,
    score_batch,
)
from filters.detection_copy import DetectionCopy, detection_copy
from filters.detectors import DlibDetectorConfig, FakeDetectorConfig, FakeFaceConfig
from filters.face_quality import face_sharpness
from filters.hand_detectors.fake import FakeHandDetectorConfig
from manifests import schema as S

# A 1000 x 700 image shrinks to 640 x 448 at detect_max_side 640 (factor 1.5625 both ways);
# the fake detector answers only at the copy's height, so the box proves the copy was scanned.
COPY_FACE = FakeFaceConfig(box=(0.25, 0.1, 0.5, 0.4), confidence=0.9)
FAKE = FakeDetectorConfig(faces=(), by_height=((448, (COPY_FACE,)),))


def _face_columns(image: np.ndarray, max_side: int | None) -> dict[str, list[object]]:
    chain = [ImageFilterConfig().build(), FaceCountConfig(detector=FAKE).build()]
    return score_batch(chain, Batch.from_images([image], detect_max_side=max_side))


def test_the_copy_keeps_its_aspect_and_the_factors_undo_the_rounding() -> None:
    image = np.zeros((333, 1001, 3), np.uint8)
    copy = detection_copy(image, 640)
    assert copy.rgb.shape == (213, 640, 3)  # 333 * 640 / 1001 = 212.9
    assert (copy.scale_x, copy.scale_y) == (1001 / 640, 333 / 213)
    small = detection_copy(image, 1024)
    assert small.rgb is image and (small.scale_x, small.scale_y) == (1.0, 1.0)
    assert detection_copy(image, None).rgb is image


def test_the_copy_is_area_resampled_and_keeps_positions(photos: dict[str, np.ndarray]) -> None:
    """Up to factor 2 the copy is bilinear to twice its size, then 2 x 2 area means: within a
    grey level of INTER_AREA on average (measured 0.26 on the astronaut at 1024 -> 640), and
    a bright square's centroid maps back to where it is in the original."""
    image = cv2.resize(photos["astronaut"], (1024, 1024), interpolation=cv2.INTER_CUBIC)
    copy = detection_copy(image, 640)
    area = cv2.resize(image, (640, 640), interpolation=cv2.INTER_AREA)
    assert 0 < float(np.abs(copy.rgb.astype(np.int16) - area).mean()) < 0.5
    dot = np.zeros((1000, 700), np.uint8)
    dot[500:504, 300:304] = 255  # centre (302, 502) in continuous pixel coordinates
    small = detection_copy(dot, 640)
    weights = small.rgb.astype(np.float64)
    ys, xs = np.mgrid[: weights.shape[0], : weights.shape[1]]
    centre_x = ((xs * weights).sum() / weights.sum() + 0.5) * small.scale_x
    centre_y = ((ys * weights).sum() / weights.sum() + 0.5) * small.scale_y
    assert centre_x == pytest.approx(302, abs=0.1) and centre_y == pytest.approx(502, abs=0.1)
    # Beyond factor 2 the copy is INTER_AREA's own.
    big = cv2.resize(image, (2000, 2000), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(
        detection_copy(big, 640).rgb, cv2.resize(big, (640, 640), interpolation=cv2.INTER_AREA)
    )


def test_boxes_and_landmarks_found_on_the_copy_come_back_in_full_pixels() -> None:
    image = np.full((700, 1000, 3), 128, np.uint8)
    columns = _face_columns(image, 640)
    assert columns[S.FACE_COUNT] == [1]
    assert columns[S.FACE_BOX][0] == pytest.approx([250.0, 70.0, 500.0, 280.0], abs=1e-9)
    full = COPY_FACE.to_face(1000, 700)  # the same face scripted at full size
    landmarks = columns[S.FACE_LANDMARKS][0][0]
    assert np.allclose(landmarks, full.landmarks, atol=1e-9, rtol=0)
    # At full resolution (no copy) the fake sees height 700, where it scripts no face.
    assert _face_columns(image, None)[S.FACE_COUNT] == [0]


def test_the_cascade_shrinks_each_row_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """face_count scans every row's copy; the cascade hands the rows it kept to hands, which
    scans the same copies (a sub-batch made by ``select``) instead of shrinking them again."""
    made: list[int] = []

    def counting(image: np.ndarray, max_side: int | None) -> DetectionCopy:
        made.append(int(image[0, 0, 0]))
        return detection_copy(image, max_side)

    monkeypatch.setattr(filters.batch, "detection_copy", counting)
    # Rows 0 and 2 are 1000 x 700 (the fake finds COPY_FACE on their 448 px copy); row 1 is
    # 1000 x 600, whose 384 px copy holds no face, so face_count rejects it.
    images = [np.full((h, 1000, 3), v, np.uint8) for v, h in ((10, 700), (20, 600), (30, 700))]
    chain = [FaceCountConfig(detector=FAKE).build(),
             HandsConfig(detector=FakeHandDetectorConfig()).build()]  # fmt: skip
    columns = score_batch(chain, Batch.from_images(images, detect_max_side=640))
    assert columns[S.FACE_COUNT] == [1, 0, 1]
    assert columns[S.HAND_COUNT] == [1, None, 1]  # row 1 was rejected before hands
    assert made == [10, 20, 30]
    batch = Batch.from_images(images, detect_max_side=640)
    first = batch.detection_copy(2)
    assert batch.select([2, 0]).detection_copy(0) is first


def test_face_crops_still_read_the_full_resolution_image(photos: dict[str, np.ndarray]) -> None:
    image = photos["grace_hopper"]
    chain = [
        ImageFilterConfig().build(),
        FaceCountConfig(detector=FakeDetectorConfig()).build(),
        FaceSharpnessConfig().build(),
    ]
    columns = score_batch(chain, Batch.from_images([image], detect_max_side=128))
    box = columns[S.FACE_BOX][0]
    assert box == pytest.approx([0.3 * 512, 0.2 * 600, 0.7 * 512, 0.6 * 600], abs=1e-9)
    assert columns[S.FACE_SHARPNESS] == [face_sharpness(image, box)]
    copy = detection_copy(image, 128)
    scale = [copy.scale_x, copy.scale_y] * 2
    small_box = [v / f for v, f in zip(box, scale, strict=True)]
    assert face_sharpness(copy.rgb, small_box) != columns[S.FACE_SHARPNESS][0]


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return w * h / (area - w * h)


def test_dlib_at_640_finds_the_face_it_finds_at_1024(photos: dict[str, np.ndarray]) -> None:
    """The astronaut upscaled to 1024 px (face ~180 px). HOG boxes snap to its 80 px window
    scaled by its pyramid steps, so the two sizes differ by a few percent of the face: measured
    IoU 0.80 and 7 px between centres; asserted IoU >= 0.75 and centres within 6% of the side."""
    image = cv2.resize(photos["astronaut"], (1024, 1024), interpolation=cv2.INTER_CUBIC)
    chain = [ImageFilterConfig().build(), FaceCountConfig(detector=DlibDetectorConfig()).build()]
    full = score_batch(chain, Batch.from_images([image], detect_max_side=None))
    copy = score_batch(chain, Batch.from_images([image], detect_max_side=640))
    assert full[S.FACE_COUNT] == copy[S.FACE_COUNT] == [1]
    a, b = full[S.FACE_BOX][0], copy[S.FACE_BOX][0]
    assert _iou(a, b) >= 0.75
    side = a[2] - a[0]
    centre_a = np.array([a[0] + a[2], a[1] + a[3]]) / 2
    centre_b = np.array([b[0] + b[2], b[1] + b[3]]) / 2
    assert float(np.hypot(*(centre_a - centre_b))) <= 0.06 * side
