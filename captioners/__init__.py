"""Captioning: the ``Captioner`` protocol, its backends, versioned prompts and cleaning.

``CAPTIONERS`` maps each registry key (``captioner: {type: <key>}`` in a pipeline config) to
its pydantic config model; ``CaptionerConfig``, the union those settings validate against, is
built from it, so a backend is its own file plus one line here. ``config.build()`` returns the
``Captioner``. The caption stage calls ``caption_batch`` per batch of kept samples.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from pydantic import BaseModel

from captioners.attributes import AttributesCaptioner, AttributesConfig
from captioners.base import (
    CaptionContext,
    Captioner,
    CaptionerUnavailable,
    RawCaption,
)
from captioners.batch import CaptionBatch, CaptionRecord, CaptionStats, caption_batch
from captioners.cleaning import CaptionCleaner, CleanCaption, CleaningConfig, build_cleaner
from captioners.hf_vlm import HfVlmCaptioner, HfVlmConfig
from captioners.openai_api import OpenAiApiCaptioner, OpenAiApiConfig
from captioners.prompts import DEFAULT_PROMPT_VERSION, PROMPTS, Prompt, get_prompt
from captioners.scripted import ScriptedCaptioner, ScriptedConfig
from manifests.registry import Registered

CAPTIONERS: dict[str, type[BaseModel]] = {
    "attributes": AttributesConfig,
    "hf_vlm": HfVlmConfig,
    "openai_api": OpenAiApiConfig,
    "scripted": ScriptedConfig,  # test fake
}


class CaptionerSettings(Protocol):
    """What every member of ``CAPTIONERS`` offers: the static type of ``CaptionerConfig``."""

    def build(self) -> Captioner: ...


CaptionerConfig = Annotated[CaptionerSettings, Registered(CAPTIONERS)]

__all__ = [
    "CAPTIONERS",
    "DEFAULT_PROMPT_VERSION",
    "PROMPTS",
    "AttributesCaptioner",
    "AttributesConfig",
    "CaptionBatch",
    "CaptionCleaner",
    "CaptionContext",
    "CaptionRecord",
    "CaptionStats",
    "Captioner",
    "CaptionerConfig",
    "CaptionerUnavailable",
    "CleanCaption",
    "CleaningConfig",
    "HfVlmCaptioner",
    "HfVlmConfig",
    "OpenAiApiCaptioner",
    "OpenAiApiConfig",
    "Prompt",
    "RawCaption",
    "ScriptedCaptioner",
    "ScriptedConfig",
    "build_cleaner",
    "caption_batch",
    "get_prompt",
]
