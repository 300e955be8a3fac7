"""score_batch / decide_all semantics, and decide speed at refilter scale."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from filters import (
    Batch,
    FaceBorderConfig,
    FaceCountConfig,
    FaceSizeConfig,
    ImageFilterConfig,
    check_chain,
    decide_all,
    score_batch,
)
from filters.protocol import Filter
from manifests import schema as S
from tests.filters.chains import (
    FAKE_DETECTOR,
    build_chain,
    offline_configs,
    scripted_images,
)
from tests.filters.conftest import encode

EXPECTED = [
    None,
    "face_count:zero",
    "face_count:too_many",
    "face_border:cut_off",
    "face_pose:yaw",
    "image:too_small",
    "image:aspect_ratio",
    "image:undecodable",
]


@pytest.fixture(scope="module")
def chain() -> list[Filter]:
    return build_chain(offline_configs(None))  # every filter but clip


@pytest.fixture(scope="module")
def batch() -> Batch:
    return Batch.from_bytes([encode(image) for image in scripted_images()] + [b"junk"])


def test_chain_gives_the_first_failing_reason(chain: list[Filter], batch: Batch) -> None:
    verdicts = decide_all(chain, score_batch(chain, batch))
    assert list(verdicts.reject_reason) == EXPECTED
    assert verdicts.keep.tolist() == [True] + [False] * 7
    assert verdicts.counts() == {**{r: 1 for r in EXPECTED[1:]}, S.KEEP: 1}


def test_rejected_rows_are_not_scored_by_later_filters(chain: list[Filter], batch: Batch) -> None:
    columns = score_batch(chain, batch)
    assert columns[S.FACE_COUNT] == [1, 0, 5, 1, 1, None, None, None]
    assert columns[S.FACE_SIZE_PX][1:3] == [None, None]
    assert [v is None for v in columns[S.NSFW_SCORE]] == [False] + [True] * 7
    assert columns[S.DECODE_STATUS] == ["ok"] * 7 + ["undecodable"]


def test_score_rejected_scores_every_row(chain: list[Filter], batch: Batch) -> None:
    columns = score_batch(chain, batch, score_rejected=True)
    assert columns[S.FACE_COUNT] == [1, 0, 5, 1, 1, 1, 1, None]  # no pixels: nothing to detect
    assert [v is None for v in columns[S.NSFW_SCORE]] == [False] * 7 + [True]
    assert list(decide_all(chain, columns).reject_reason) == EXPECTED


def test_verdict_columns(chain: list[Filter], batch: Batch) -> None:
    columns = decide_all(chain, score_batch(chain, batch)).columns()
    assert columns[S.KEEP] == [True] + [False] * 7
    assert columns[S.REJECT_REASON] == EXPECTED
    assert columns[S.keep_column("image")] == [True] * 5 + [False] * 3
    # Rows an earlier filter rejected were not scored: later filters report them as missing.
    face_size = columns[S.keep_column("face_size")]
    assert face_size == [True, False, False, True, True, False, False, False]
    assert set(columns) == {S.KEEP, S.REJECT_REASON} | {f.keep_column for f in chain}


def test_refilter_with_new_thresholds_needs_no_model(chain: list[Filter], batch: Batch) -> None:
    columns = score_batch(chain, batch, score_rejected=True)
    retuned = [
        ImageFilterConfig(min_side_px=64, max_aspect_ratio=4.0).build(),
        FaceCountConfig(detector=FAKE_DETECTOR, max_faces=5).build(),
        FaceBorderConfig(min_margin=-1.0).build(),
    ]
    reasons = list(decide_all(retuned, columns).reject_reason)
    assert reasons == [None, "face_count:zero", None, None, None, None, None, "image:undecodable"]


def test_chain_order_is_checked() -> None:
    size = FaceSizeConfig().build()
    with pytest.raises(ValueError, match=r"face_size.*reads"):
        check_chain([size])
    with pytest.raises(ValueError, match="configured twice"):
        check_chain([ImageFilterConfig().build(), ImageFilterConfig().build()])
    with pytest.raises(ValueError, match="reads"):
        score_batch([size], Batch.from_images([np.zeros((8, 8, 3), dtype=np.uint8)]))


def synthetic_manifest(rows: int) -> dict[str, Any]:
    """Arrow columns shaped like a filter manifest, as refilter reads them from Parquet."""
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 4, size=rows)
    offsets = np.concatenate([[0], np.cumsum(faces)]).astype(np.int32)
    confidences = pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(rng.uniform(0.4, 1.0, int(offsets[-1])), pa.float32())
    )

    def numbers(low: float, high: float) -> pa.Array:
        return pa.array(rng.uniform(low, high, rows), pa.float32())

    return {
        S.DECODE_STATUS: pa.array(np.where(rng.random(rows) < 0.01, "undecodable", "ok")),
        S.IMG_WIDTH_PX: pa.array(rng.integers(100, 2000, rows)),
        S.IMG_HEIGHT_PX: pa.array(rng.integers(100, 2000, rows)),
        S.FACE_CONFIDENCES: confidences,
        S.FACE_CONFIDENCE: numbers(0.4, 1.0),
        S.FACE_SIZE_PX: numbers(20, 500),
        S.FACE_AREA_FRACTION: numbers(0, 0.5),
        S.FACE_BORDER_MARGIN: numbers(-0.5, 2),
        S.FACE_YAW_DEG: numbers(-90, 90),
        S.FACE_ROLL_DEG: numbers(-90, 90),
        S.FACE_PITCH_DEG: numbers(-60, 60),
        S.FACE_SHARPNESS: numbers(0, 500),
        S.FACE_BRIGHTNESS: numbers(0, 1),
        S.FACE_CONTRAST: numbers(0, 0.4),
        S.NSFW_SCORE: numbers(0, 1),
        S.FACE_EYE_OPENNESS: numbers(0, 0.4),
        S.BODY_UPPER_VISIBILITY: numbers(0, 1),
        S.BODY_FULL_VISIBILITY: numbers(0, 1),
        S.HAND_COUNT: pa.array(rng.integers(0, 3, rows), pa.int32()),  # hands keeps every row
    }


def test_decide_all_handles_a_million_rows_in_seconds(chain: list[Filter]) -> None:
    rows = 1_000_000
    manifest = synthetic_manifest(rows)
    start = time.perf_counter()
    verdicts = decide_all(chain, manifest)
    seconds = time.perf_counter() - start
    assert verdicts.keep.shape == (rows,) and 0 < verdicts.keep.sum() < rows
    assert seconds < 10.0, f"decide_all took {seconds:.1f} s for 1M rows"


def test_decide_all_names_a_filter_whose_columns_are_absent(chain: list[Filter]) -> None:
    manifest = {S.DECODE_STATUS: ["ok"], S.IMG_WIDTH_PX: [300], S.IMG_HEIGHT_PX: [300]}
    with pytest.raises(ValueError, match=r"'face_count' decided 0 rows, expected 1"):
        decide_all(chain, manifest)
