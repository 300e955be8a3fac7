"""clip filter plumbing with a tiny random-weight open_clip model: shapes, batching, columns.

Random weights say nothing about what the scores mean; these tests never assert that.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from filters import Batch, ClipFilterConfig, MissingModelError
from manifests import schema as S
from tests.filters.conftest import TINY_CLIP


def photo_batch(photos: dict[str, np.ndarray], texts: list[str | None]) -> Batch:
    images = [photos[name] for name in ("astronaut", "grace_hopper", "coffee")]
    return Batch.from_images(images, {S.ALT_TEXT: texts})


def test_scores_every_row_with_text(
    clip_checkpoint: Path, heads: tuple[Path, Path], photos: dict[str, np.ndarray]
) -> None:
    config = ClipFilterConfig(
        model_name=TINY_CLIP,
        checkpoint=clip_checkpoint,
        aesthetic_head=heads[0],
        watermark_head=heads[1],
        batch_size=2,
    )
    batch = photo_batch(photos, ["an astronaut", "a naval officer", None])
    out = config.build().score(batch)
    assert set(out) == {S.CLIP_SIMILARITY, S.AESTHETIC_SCORE, S.WATERMARK_SCORE}
    assert all(values[2] is None for values in out.values())  # no text, no score
    assert all(-1.0 <= s <= 1.0 for s in out[S.CLIP_SIMILARITY][:2])
    assert all(isinstance(a, float) for a in out[S.AESTHETIC_SCORE][:2])
    assert all(0.0 <= w <= 1.0 for w in out[S.WATERMARK_SCORE][:2])
    # Batching does not change scores.
    single = config.model_copy(update={"batch_size": 1}).build().score(batch)
    for name in out:
        assert np.allclose(np.array(out[name][:2]), np.array(single[name][:2]), atol=1e-5)


def test_heads_are_optional(clip_checkpoint: Path, photos: dict[str, np.ndarray]) -> None:
    flt = ClipFilterConfig(model_name=TINY_CLIP, checkpoint=clip_checkpoint).build()
    out = flt.score(photo_batch(photos, ["a", "b", "c"]))
    assert out[S.AESTHETIC_SCORE] == [None] * 3 and out[S.WATERMARK_SCORE] == [None] * 3
    keep, reasons = flt.decide({**out, S.CLIP_SIMILARITY: [0.5, 0.1, None]})
    assert keep.tolist() == [True, False, False]
    assert reasons.tolist() == [None, "clip:low_similarity", "clip:missing"]


def test_decide_applies_configured_heads_only(clip_checkpoint: Path, heads: tuple) -> None:
    config = ClipFilterConfig(
        checkpoint=clip_checkpoint, aesthetic_head=heads[0], watermark_head=heads[1]
    )
    columns = {
        S.CLIP_SIMILARITY: [0.3, 0.3, 0.3, 0.3],
        S.AESTHETIC_SCORE: [1.0, 6.0, 6.0, None],
        S.WATERMARK_SCORE: [0.1, 0.1, 0.9, 0.1],
    }
    strict = config.model_copy(update={"min_aesthetic": 5.0}).build()
    assert strict.decide(columns)[1].tolist() == [
        "clip:low_aesthetic",
        None,
        "clip:watermark",
        "clip:missing",
    ]
    assert config.build().decide(columns)[1].tolist() == [None, None, "clip:watermark", None]


def test_checkpoint_that_vanished_after_validation_is_a_clear_error(
    tmp_path: Path, photos: dict
) -> None:
    config = ClipFilterConfig.model_construct(
        model_name=TINY_CLIP, checkpoint=tmp_path / "absent.pt"
    )
    flt = config.build()
    with pytest.raises(MissingModelError, match=r"absent\.pt"):
        flt.score(photo_batch(photos, ["a", "b", "c"]))
