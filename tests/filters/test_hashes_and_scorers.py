"""Perceptual hash, face_sharpness / face_exposure helpers and the pose estimate."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from filters.face_pose import roll_deg, yaw_deg
from filters.face_quality import face_exposure, face_sharpness
from filters.perceptual_hash import hamming_to_many, phash_hex, phash_to_uint64

GRACE_BOX = (161.0, 137.0, 377.0, 353.0)


def test_phash_is_stable_under_reencoding_and_resizing(photos: dict[str, np.ndarray]) -> None:
    grace = photos["grace_hopper"]
    buffer = io.BytesIO()
    Image.fromarray(grace).save(buffer, format="JPEG", quality=70)
    reencoded = np.asarray(Image.open(buffer).convert("RGB"))
    resized = cv2.resize(grace, (460, 540), interpolation=cv2.INTER_AREA)
    original = phash_hex(grace)
    assert len(original) == 16
    others = phash_to_uint64(
        [phash_hex(reencoded), phash_hex(resized), phash_hex(photos["astronaut"])]
    )
    near_reencoded, near_resized, astronaut = hamming_to_many(original, others).tolist()
    assert near_reencoded <= 4
    assert near_resized <= 4
    assert astronaut > 20


def test_hamming_to_many_counts_differing_bits() -> None:
    hashes = ["0000000000000000", "ffffffffffffffff", "000000000000000f", "8000000000000001"]
    assert hamming_to_many("0000000000000000", phash_to_uint64(hashes)).tolist() == [0, 64, 4, 2]


def test_sharpness_drops_with_blur(photos: dict[str, np.ndarray]) -> None:
    grace = photos["grace_hopper"]
    scores = [face_sharpness(cv2.GaussianBlur(grace, (0, 0), s), GRACE_BOX) for s in (0.5, 1, 2)]
    assert face_sharpness(grace, GRACE_BOX) > scores[0] > scores[1] > scores[2]


def test_sharpness_is_normalized_for_crop_size() -> None:
    """The same texture seen as a 256 px and a 512 px crop scores alike (both resampled to
    128 px), where the raw Laplacian variance would differ several-fold."""
    rng = np.random.default_rng(0)
    texture = cv2.resize(rng.integers(0, 256, (32, 32), dtype=np.uint8), (256, 256))
    small = np.repeat(texture[:, :, None], 3, axis=2)
    large = cv2.resize(small, (512, 512), interpolation=cv2.INTER_CUBIC)
    a, b = face_sharpness(small, (0, 0, 256, 256)), face_sharpness(large, (0, 0, 512, 512))
    assert abs(a - b) / a < 0.1


def test_empty_crop_gives_nan() -> None:
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    assert np.isnan(face_sharpness(image, (20, 20, 30, 30)))
    assert all(np.isnan(face_exposure(image, (20, 20, 30, 30))))


def test_exposure_of_flat_patches() -> None:
    gray = np.full((20, 20, 3), 51, dtype=np.uint8)
    assert face_exposure(gray, (0, 0, 20, 20)) == pytest.approx((0.2, 0.0), abs=1e-6)


def test_pose_of_synthetic_landmarks() -> None:
    frontal = np.array([[30.0, 40], [70, 40], [50, 60], [35, 80], [65, 80]])
    assert yaw_deg(frontal) == pytest.approx(0.0) and roll_deg(frontal) == pytest.approx(0.0)
    turned = frontal.copy()
    turned[2, 0] = 70  # nose tip over the right eye: offset = half eye distance -> 45 deg
    assert yaw_deg(turned) == pytest.approx(45.0)
    angle = np.radians(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    tilted = turned @ rotation.T
    assert roll_deg(tilted) == pytest.approx(20.0) and yaw_deg(tilted) == pytest.approx(45.0)
