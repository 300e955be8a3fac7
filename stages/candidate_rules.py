"""Metadata prefilters applied before any download; each dropped row names its rule.

Every rule is optional (``None`` disables it) and unknown metadata (null) passes: a missing
WIDTH is not evidence of a small image. Rules are checked in the order of ``RULES`` and the
first that fails gives the reason ``candidates:<rule>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from manifests import schema as S


class PrefilterConfig(BaseModel):
    """Thresholds on LAION metadata; all off by default, the presets set them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_width_px: int | None = Field(None, ge=1, description="WIDTH below this is dropped")
    min_height_px: int | None = Field(None, ge=1, description="HEIGHT below this is dropped")
    max_aspect_ratio: float | None = Field(None, ge=1.0, description="long side / short side")
    max_punsafe: float | None = Field(None, ge=0.0, le=1.0, description="LAION-5B punsafe")
    drop_nsfw_tags: list[str] = Field(
        default_factory=list, description="LAION-400M NSFW tags to drop, e.g. [NSFW, UNSURE]"
    )
    max_pwatermark: float | None = Field(None, ge=0.0, le=1.0, description="LAION-5B pwatermark")
    min_similarity: float | None = Field(None, description="LAION CLIP similarity")
    min_caption_chars: int | None = Field(None, ge=0, description="alt text shorter is dropped")
    max_caption_chars: int | None = Field(None, ge=1, description="alt text longer is dropped")


@dataclass(frozen=True)
class Rule:
    """A named test over the candidate table: True where the row fails the rule."""

    why: str
    fails: Callable[[pa.Table, PrefilterConfig], np.ndarray | None]


def _filled(array: pa.ChunkedArray | pa.Array, mask: pa.Array) -> np.ndarray:
    """A boolean mask with nulls (unknown metadata) counted as passing."""
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _below(column: str, attr: str) -> Callable[[pa.Table, PrefilterConfig], np.ndarray | None]:
    def fails(table: pa.Table, cfg: PrefilterConfig) -> np.ndarray | None:
        limit = getattr(cfg, attr)
        return None if limit is None else _filled(table[column], pc.less(table[column], limit))

    return fails


def _above(column: str, attr: str) -> Callable[[pa.Table, PrefilterConfig], np.ndarray | None]:
    def fails(table: pa.Table, cfg: PrefilterConfig) -> np.ndarray | None:
        limit = getattr(cfg, attr)
        return None if limit is None else _filled(table[column], pc.greater(table[column], limit))

    return fails


def _aspect(table: pa.Table, cfg: PrefilterConfig) -> np.ndarray | None:
    if cfg.max_aspect_ratio is None:
        return None
    w = pc.cast(table[S.META_WIDTH_PX], pa.float64())
    h = pc.cast(table[S.META_HEIGHT_PX], pa.float64())
    valid = pc.and_(pc.greater(w, 0), pc.greater(h, 0))
    ratio = pc.max_element_wise(pc.divide(w, h), pc.divide(h, w))
    return _filled(ratio, pc.and_(valid, pc.greater(ratio, cfg.max_aspect_ratio)))


def _nsfw(table: pa.Table, cfg: PrefilterConfig) -> np.ndarray | None:
    if not cfg.drop_nsfw_tags:
        return None
    tags = pc.utf8_upper(table[S.NSFW_TAG])
    wanted = pa.array([t.upper() for t in cfg.drop_nsfw_tags])
    return _filled(tags, pc.is_in(tags, value_set=wanted))


def _caption_len(longer: bool) -> Callable[[pa.Table, PrefilterConfig], np.ndarray | None]:
    def fails(table: pa.Table, cfg: PrefilterConfig) -> np.ndarray | None:
        limit = cfg.max_caption_chars if longer else cfg.min_caption_chars
        if limit is None:
            return None
        text = pc.fill_null(table[S.ALT_TEXT], "")
        length = pc.utf8_length(pc.utf8_trim_whitespace(text))
        test = pc.greater(length, limit) if longer else pc.less(length, limit)
        return _filled(length, test)

    return fails


RULES: tuple[Rule, ...] = (
    Rule("min_width", _below(S.META_WIDTH_PX, "min_width_px")),
    Rule("min_height", _below(S.META_HEIGHT_PX, "min_height_px")),
    Rule("aspect_ratio", _aspect),
    Rule("punsafe", _above(S.PUNSAFE, "max_punsafe")),
    Rule("nsfw_tag", _nsfw),
    Rule("watermark", _above(S.PWATERMARK, "max_pwatermark")),
    Rule("similarity", _below(S.SIMILARITY, "min_similarity")),
    Rule("caption_short", _caption_len(longer=False)),
    Rule("caption_long", _caption_len(longer=True)),
)


def first_failing_rule(table: pa.Table, cfg: PrefilterConfig) -> list[str | None]:
    """Per row, the ``why`` of the first rule it fails, or None."""
    out: list[str | None] = [None] * table.num_rows
    for rule in RULES:
        fails = rule.fails(table, cfg)
        if fails is None:
            continue
        for i in np.flatnonzero(fails):
            if out[i] is None:
                out[i] = rule.why
    return out
