"""Captioning: the ``Captioner`` protocol, its backends, versioned prompts and cleaning.

``CAPTIONERS`` maps each registry key (``captioner: {type: <key>}`` in a pipeline config) to
its pydantic config model; ``config.build()`` returns the ``Captioner``. The caption stage
calls ``caption_batch`` per batch of kept samples.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from captioners.attributes import AttributesCaptioner, AttributesConfig
from captioners.base import (
    CONTEXT_COLUMNS,
    CaptionContext,
    Captioner,
    CaptionerUnavailable,
    RawCaption,
)
from captioners.batch import CaptionBatch, CaptionRecord, CaptionStats, caption_batch
from captioners.cleaner import CaptionCleaner, build_cleaner
from captioners.cleaning import CleanCaption, CleaningConfig
from captioners.hf_vlm import HfVlmCaptioner, HfVlmConfig
from captioners.openai_api import OpenAiApiCaptioner, OpenAiApiConfig
from captioners.prompts import DEFAULT_PROMPT_VERSION, PROMPTS, Prompt, get_prompt
from captioners.scripted import ScriptedCaptioner, ScriptedConfig

CAPTIONERS: dict[str, type[BaseModel]] = {
    "attributes": AttributesConfig,
    "hf_vlm": HfVlmConfig,
    "openai_api": OpenAiApiConfig,
    "scripted": ScriptedConfig,  # test fake
}

# Discriminated union over CAPTIONERS (same members), for configs that name a captioner.
CaptionerConfig = Annotated[
    AttributesConfig | HfVlmConfig | OpenAiApiConfig | ScriptedConfig, Field(discriminator="type")
]

__all__ = [
    "CAPTIONERS",
    "CONTEXT_COLUMNS",
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
