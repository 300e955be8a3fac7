"""The cascade (``filter.score_rejected``): who skips rejected rows, ``not_scored``, and
``refilter`` refusing to keep a row on scores that were never computed."""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from filters import (
    Batch,
    FaceCountConfig,
    FaceExposureConfig,
    FaceSharpnessConfig,
    FaceSizeConfig,
    ImageFilterConfig,
    NsfwConfig,
    decide_all,
)
from filters.face_quality import FaceExposureFilter
from filters.protocol import Filter
from filters.scoring import ScoreRejected, is_expensive, score_chain
from manifests import schema as S
from manifests.io import join_stages
from manifests.layout import RunLayout
from pipeline.refilter import refilter
from stages.filter import DEFAULT_CHAIN
from tests.filters.chains import FAKE_DETECTOR, scripted_images
from tests.filters.conftest import encode


@dataclass(frozen=True)
class DeclaredExpensiveExposure(FaceExposureFilter):
    """face_exposure opting into the cascade by its declaration alone (as a mesh or hands
    filter would)."""

    expensive = True


def _chain(max_faces: int = 3, min_px: float = 80.0) -> list[Filter]:
    return [
        ImageFilterConfig().build(),
        FaceCountConfig(detector=FAKE_DETECTOR, max_faces=max_faces).build(),
        FaceSizeConfig(min_px=min_px, min_area_fraction=0.0).build(),
        DeclaredExpensiveExposure(FaceExposureConfig()),
        FaceSharpnessConfig().build(),
        NsfwConfig(max_score=1.0).build(),  # never rejects noise: the counts stay the chain's
    ]


# Rows of scripted_images() + junk: 0 one face, 1 no face, 2 five faces, 3 cut off, 4 tilted,
# 5 tiny, 6 very wide, 7 undecodable.
FACES_REJECTED, IMAGE_REJECTED = (1, 2), (5, 6, 7)
AFTER_IMAGE = ["face_count", "face_size", "face_exposure", "face_sharpness", "nsfw"]


@pytest.fixture(scope="module")
def batch() -> Batch:
    return Batch.from_bytes([encode(image) for image in scripted_images()] + [b"junk"])


def _not_scored(batch: Batch, mode: ScoreRejected) -> list[list[str]]:
    return score_chain(_chain(), batch, mode).not_scored


def test_expensive_is_what_a_filter_declares() -> None:
    assert [is_expensive(f) for f in _chain()] == [False, True, False, True, False, True]


def test_the_full_cascade_skips_every_later_filter(batch: Batch) -> None:
    skipped = _not_scored(batch, False)
    assert [skipped[r] for r in FACES_REJECTED] == [AFTER_IMAGE[1:]] * 2
    assert [skipped[r] for r in IMAGE_REJECTED] == [AFTER_IMAGE] * 3
    assert [skipped[r] for r in (0, 3, 4)] == [[], [], []]


def test_cheap_skips_only_declared_expensive_filters(batch: Batch) -> None:
    result = score_chain(_chain(), batch, "cheap")
    assert [result.not_scored[r] for r in FACES_REJECTED] == [["face_exposure", "nsfw"]] * 2
    expensive = ["face_count", "face_exposure", "nsfw"]
    assert [result.not_scored[r] for r in IMAGE_REJECTED] == [expensive] * 3
    # The cheap filters scored the five-face image too; there was no face to score on row 1.
    assert [v is not None for v in result.columns[S.FACE_SIZE_PX]] == [
        True, False, True, True, True, False, False, False,
    ]  # fmt: skip
    assert result.columns[S.FACE_BRIGHTNESS][2] is None and result.columns[S.NSFW_SCORE][2] is None
    assert set(result.seconds) == {"decide", "image", *AFTER_IMAGE}


def test_score_rejected_true_scores_everything(batch: Batch) -> None:
    assert _not_scored(batch, True) == [[]] * 8


def test_run_verdicts_are_the_same_in_every_mode(batch: Batch) -> None:
    funnels = []
    for mode in (False, "cheap", True):
        result = score_chain(_chain(), batch, mode)
        verdicts = decide_all(_chain(), {**result.columns, S.NOT_SCORED: result.not_scored})
        funnels.append(verdicts.counts())
    assert funnels == [funnels[0]] * 3
    assert funnels[0] == {
        "keep": 3, "face_count:zero": 1, "face_count:too_many": 1, "image:too_small": 1,
        "image:aspect_ratio": 1, "image:undecodable": 1,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "unscored"),
    [(False, "face_size:not_scored"), ("cheap", "face_exposure:not_scored"), (True, None)],
)
def test_looser_thresholds_never_keep_a_row_on_missing_scores(
    batch: Batch, mode: ScoreRejected, unscored: str | None
) -> None:
    result = score_chain(_chain(), batch, mode)
    columns = {**result.columns, S.NOT_SCORED: result.not_scored}
    loose = _chain(max_faces=5, min_px=0.0)  # the five-face image now passes face_count
    verdicts = decide_all(loose, columns)
    assert verdicts.reject_reason[2] == unscored
    assert verdicts.counts()["keep"] == (4 if unscored is None else 3)
    # Only a full audit scored the tiny and the wide image with nsfw (nothing decodes junk).
    nsfw = verdicts.per_filter[S.keep_column("nsfw")][list(IMAGE_REJECTED)]
    assert nsfw.tolist() == [mode is True, mode is True, False]


def _refiltered(reference_run: Path, tmp_path: Path, setting: str) -> Counter[str]:
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    return refilter(run_dir, [setting], name="loose").after


def test_refilter_refuses_rows_that_reach_unscored_filters(
    reference_run: Path, tmp_path: Path
) -> None:
    # The demo's cascade never ran the detector on the one too-small image.
    assert _refiltered(reference_run, tmp_path, "filter.image.min_side_px=1") == Counter(
        {"kept": 6, "face_count:zero": 4, "face_confidence:low": 2, "face_count:not_scored": 1}
    )


def test_refilter_names_the_first_filter_that_never_scored(
    reference_run: Path, tmp_path: Path
) -> None:
    assert _refiltered(reference_run, tmp_path, "filter.face_count.min_faces=0") == Counter(
        {"kept": 6, "face_confidence:not_scored": 4, "face_confidence:low": 2, "image:too_small": 1}
    )


def test_the_manifest_lists_what_each_row_skipped(reference_run: Path) -> None:
    layout = RunLayout(reference_run)
    rows: dict[str, list[list[str] | None]] = {}
    for shard in layout.done_shards("filter"):
        table = join_stages(layout, ["candidates", "filter"], shard, [S.URL, S.NOT_SCORED])
        urls, skipped = table[S.URL].to_pylist(), table[S.NOT_SCORED].to_pylist()
        for url, names in zip(urls, skipped, strict=True):
            if url:
                rows.setdefault(url.split("/", 3)[3], []).append(names)
    # The demo runs the default chain (image, face_count, ...); image rejected the small one.
    assert rows["img/astronaut_small.jpg"] == [DEFAULT_CHAIN[1:]]
    assert rows["img/coffee.jpg"] == [DEFAULT_CHAIN[2:]]  # no face: skipped from face_confidence
    # Kept, so scored by every filter; its duplicate URL never entered the filter stage.
    assert sorted(rows["img/astronaut.jpg"], key=lambda names: names is None) == [[], None]
    assert rows["status/404"] == [None]
