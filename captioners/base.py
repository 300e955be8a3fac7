"""The ``Captioner`` extension point: what a backend receives and what it returns.

A captioner turns a batch of decoded images plus what the pipeline already knows about each
sample (a ``CaptionContext``) into raw model text (``RawCaption``). Cleaning, length limits and
flags are applied afterwards by ``captioners.batch.caption_batch``, identically for every
backend, so backends stay small.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import numpy as np

from manifests import schema as S

AttributeValue = float | int | str | bool | Sequence[float] | None


@dataclass(frozen=True)
class CaptionContext:
    """What the pipeline knows about one sample before captioning.

    ``attributes`` maps manifest column constants of ``manifests.schema`` (``S.FACE_COUNT``,
    ``S.FACE_BOX``, ``S.IMG_WIDTH_PX`` ...) to their values; any value may be ``None`` and any
    key may be absent (a backend that does not measure something leaves it out).
    """

    sample_id: str
    alt_text: str | None = None
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A read-only copy, so a context can be shared between threads and never changes.
        object.__setattr__(self, "attributes", MappingProxyType(dict(self.attributes)))

    @classmethod
    def from_row(cls, row: Mapping[str, object], columns: Iterable[str]) -> CaptionContext:
        """A context from one joined manifest row: ``S.SAMPLE_ID``, ``S.ALT_TEXT`` and those
        of ``columns`` the row has (absent ones stay absent). ``columns`` are what the filters
        offer captioners (``filters.declarations.caption_context``; the caption stage
        passes them): this package may not know the filters (DESIGN.md section 2)."""
        alt = row.get(S.ALT_TEXT)
        attributes = {c: row[c] for c in columns if c in row}
        return cls(str(row[S.SAMPLE_ID]), alt if isinstance(alt, str) else None, attributes)  # type: ignore[arg-type]

    def get(self, column: str) -> AttributeValue:
        """The value of ``column`` or ``None`` when it was not measured."""
        return self.attributes.get(column)


@dataclass(frozen=True)
class RawCaption:
    """Uncleaned backend output for one sample.

    ``error`` is set (and ``text`` empty) when this one sample could not be captioned for a
    reason that retrying the shard would not fix (e.g. the server rejected the image).
    ``seconds`` is this sample's share of model time (batch time / batch size).
    """

    text: str
    short: str | None = None
    generated_tokens: int = 0
    seconds: float = 0.0
    error: str | None = None


@runtime_checkable
class Captioner(Protocol):
    """A captioning backend.

    ``model`` is recorded per sample in ``S.CAPTION_MODEL`` (``"<backend>:<model>"``);
    ``prompt_version`` in ``S.CAPTION_PROMPT_VERSION``. When ``needs_pixels`` is false,
    ``caption`` accepts an empty ``images`` sequence, so the stage may skip decoding.
    """

    model: str
    prompt_version: str
    needs_pixels: bool

    def caption(
        self, images: Sequence[np.ndarray], contexts: Sequence[CaptionContext]
    ) -> list[RawCaption]:
        """Caption ``images[i]`` (HxWx3 uint8 RGB) described by ``contexts[i]``, in order."""
        ...


class CaptionerUnavailable(RuntimeError):
    """The backend cannot caption right now (server down, retries exhausted): retry the shard."""


def check_batch(
    images: Sequence[np.ndarray], contexts: Sequence[CaptionContext], needs_pixels: bool
) -> None:
    """Raise ``ValueError`` unless ``images`` fits ``contexts`` (HxWx3 uint8, same length)."""
    if not needs_pixels and len(images) == 0:
        return
    if len(images) != len(contexts):
        raise ValueError(f"{len(images)} images for {len(contexts)} contexts")
    for context, image in zip(contexts, images, strict=True):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"{context.sample_id}: expected HxWx3 uint8 RGB, got {image.shape} {image.dtype}"
            )
