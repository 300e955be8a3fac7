"""``caption_batch``: what the caption stage calls per batch of kept samples.

Runs a captioner, cleans every caption with the same rules, optionally replaces refusals and
failures by a fallback captioner (typically ``attributes``), and returns one ``CaptionRecord``
per sample plus ``CaptionStats`` for the shard report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np

from captioners.base import CaptionContext, Captioner, RawCaption
from captioners.cleaning import CaptionCleaner, CleanCaption, CleaningConfig, build_cleaner
from manifests import schema as S

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptionRecord:
    """One sample's caption columns; ``caption`` is ``None`` when refused or failed (and no
    fallback replaced it). ``refusal``/``error`` describe the primary captioner even when a
    fallback wrote the caption, in which case ``model`` names the fallback."""

    sample_id: str
    caption: str | None
    caption_short: str | None
    model: str
    prompt_version: str
    words: int
    tokens: int
    refusal: bool
    truncated: bool
    repetition: bool
    seconds: float
    error: str | None = None

    def as_row(self) -> dict[str, object]:
        """The record keyed by manifest column constants (``S.CAPTION`` ...)."""
        return {
            S.SAMPLE_ID: self.sample_id,
            S.CAPTION: self.caption,
            S.CAPTION_SHORT: self.caption_short,
            S.CAPTION_MODEL: self.model,
            S.CAPTION_PROMPT_VERSION: self.prompt_version,
            S.CAPTION_WORDS: self.words,
            S.CAPTION_TOKENS: self.tokens,
            S.CAPTION_REFUSAL: self.refusal,
            S.CAPTION_TRUNCATED: self.truncated,
            S.CAPTION_REPETITION: self.repetition,
            S.CAPTION_SECONDS: self.seconds,
            S.CAPTION_ERROR: self.error,
        }


@dataclass(frozen=True)
class CaptionStats:
    """Counts and model time of one or more batches; merge with ``+`` (reports add up)."""

    images: int = 0
    seconds: float = 0.0
    generated_tokens: int = 0
    refusals: int = 0
    repetitions: int = 0
    shortened: int = 0
    errors: int = 0
    fallbacks: int = 0
    missing: int = 0  # no caption written (refused or failed without a fallback)

    def __add__(self, other: CaptionStats) -> CaptionStats:
        mine, theirs = asdict(self), asdict(other)
        return CaptionStats(**{f.name: mine[f.name] + theirs[f.name] for f in fields(self)})

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds > 0 else 0.0

    def as_report(self) -> dict[str, float]:
        """Flat numbers for the shard report, rates included."""
        report: dict[str, float] = {f"caption_{k}": v for k, v in asdict(self).items()}
        report["caption_images_per_s"] = self.images_per_s
        report["caption_tokens_per_s"] = self.tokens_per_s
        return report


@dataclass(frozen=True)
class CaptionBatch:
    """The records of one batch, in input order, and its statistics."""

    records: tuple[CaptionRecord, ...]
    stats: CaptionStats

    def columns(self) -> dict[str, list[object]]:
        """Column-wise values keyed by ``S.CAPTION_RECORD_COLUMNS`` (ready for pyarrow)."""
        rows = [r.as_row() for r in self.records]
        return {name: [row[name] for row in rows] for name in S.CAPTION_RECORD_COLUMNS}


def _timed_caption(
    captioner: Captioner, images: Sequence[np.ndarray], contexts: Sequence[CaptionContext]
) -> tuple[list[RawCaption], float]:
    start = time.perf_counter()
    raws = captioner.caption(images, contexts)
    if len(raws) != len(contexts):
        raise RuntimeError(f"{captioner.model} returned {len(raws)} captions for {len(contexts)}")
    return raws, time.perf_counter() - start


def _usable(raw: RawCaption, clean: CleanCaption) -> bool:
    return raw.error is None and not clean.refusal and clean.words > 0


def _record(
    context: CaptionContext, raw: RawCaption, captioner: Captioner, cleaner: CaptionCleaner,
    seconds: float,
) -> CaptionRecord:  # fmt: skip
    long = cleaner.clean(raw.text)
    short = cleaner.clean(raw.short, short=True) if raw.short else None
    usable = _usable(raw, long)
    return CaptionRecord(
        sample_id=context.sample_id,
        caption=long.text if usable else None,
        caption_short=short.text if usable and short and short.words else None,
        model=captioner.model,
        prompt_version=captioner.prompt_version,
        words=long.words if usable else 0,
        tokens=long.tokens if usable else 0,
        refusal=long.refusal,
        truncated=long.truncated or bool(short and short.truncated),
        repetition=long.repetition or bool(short and short.repetition),
        seconds=raw.seconds or seconds,
        error=raw.error,
    )


def _replace(primary: CaptionRecord, backup: CaptionRecord) -> CaptionRecord:
    """The fallback's caption with the primary's refusal and error kept for the audit."""
    return CaptionRecord(**{**asdict(backup), "refusal": primary.refusal, "error": primary.error})


def caption_batch(
    captioner: Captioner,
    images: Sequence[np.ndarray],
    contexts: Sequence[CaptionContext],
    cleaning: CleaningConfig,
    fallback: Captioner | None = None,
) -> CaptionBatch:
    """Caption, clean and count one batch.

    ``images`` may be empty when ``captioner.needs_pixels`` is false. Samples the captioner
    refused or failed on are captioned by ``fallback`` when given, else left ``None``.
    """
    cleaner = build_cleaner(cleaning)
    raws, seconds = _timed_caption(captioner, images, contexts)
    share = seconds / max(len(contexts), 1)
    records = [
        _record(c, r, captioner, cleaner, share) for c, r in zip(contexts, raws, strict=True)
    ]
    failed = [i for i, rec in enumerate(records) if rec.caption is None]
    if fallback is not None and failed:
        backup_images = [images[i] for i in failed] if fallback.needs_pixels else []
        backup_raws, _ = _timed_caption(fallback, backup_images, [contexts[i] for i in failed])
        for i, raw in zip(failed, backup_raws, strict=True):
            records[i] = _replace(records[i], _record(contexts[i], raw, fallback, cleaner, 0.0))
    stats = CaptionStats(
        images=len(records),
        seconds=seconds,
        generated_tokens=sum(r.generated_tokens for r in raws),
        refusals=sum(r.refusal for r in records),
        repetitions=sum(r.repetition for r in records),
        shortened=sum(r.truncated for r in records),
        errors=sum(r.error is not None for r in records),
        fallbacks=len(failed) if fallback is not None else 0,
        missing=sum(r.caption is None for r in records),
    )
    if stats.refusals or stats.errors:
        log.info("%s: %d refusals, %d errors", captioner.model, stats.refusals, stats.errors)
    return CaptionBatch(tuple(records), stats)
