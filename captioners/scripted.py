"""``scripted``: a fake backend for tests; answers come from the config, not a model.

Lets stage and pipeline tests exercise refusals, loops, long captions and per-sample errors
without a model. It implements the real ``Captioner`` protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from captioners.base import CaptionContext, RawCaption, check_batch

_ERROR_PREFIX = "error:"


class ScriptedConfig(BaseModel):
    """``answers`` maps sample_id to raw text (``"error:<why>"`` fails that sample)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["scripted"] = "scripted"
    answers: dict[str, str] = {}
    default: str = "A person looking at the camera."  # for sample_ids not in answers
    needs_pixels: bool = False

    def build(self) -> ScriptedCaptioner:
        return ScriptedCaptioner(self)


class ScriptedCaptioner:
    """Returns the scripted answer of each sample; counts one token per word."""

    model = "scripted"
    prompt_version = "scripted"

    def __init__(self, config: ScriptedConfig) -> None:
        self.config = config
        self.needs_pixels = config.needs_pixels
        self.calls = 0  # batches seen, for tests of batching policies

    def caption(
        self, images: Sequence[np.ndarray], contexts: Sequence[CaptionContext]
    ) -> list[RawCaption]:
        check_batch(images, contexts, self.needs_pixels)
        self.calls += 1
        return [self._answer(c.sample_id) for c in contexts]

    def _answer(self, sample_id: str) -> RawCaption:
        text = self.config.answers.get(sample_id, self.config.default)
        if text.startswith(_ERROR_PREFIX):
            return RawCaption("", error=text[len(_ERROR_PREFIX) :].strip())
        return RawCaption(text, generated_tokens=len(text.split()))
