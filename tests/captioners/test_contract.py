"""Contract tests over the ``CAPTIONERS`` registry: a registered backend is tested here."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
from pydantic import BaseModel, ValidationError

from captioners import CAPTIONERS, CaptionContext, Captioner, CleaningConfig, caption_batch
from manifests import schema as S

# The MiniLM tokenizer of the tiny checkpoints carries a max_length that padding ignores.
pytestmark = pytest.mark.filterwarnings("ignore:`max_length` is ignored:UserWarning")


@pytest.fixture
def minimal_configs(tiny_qwen: Path) -> dict[str, dict[str, Any]]:
    """The fewest settings that build each backend (a new key must be added here)."""
    return {
        "attributes": {},
        "hf_vlm": {"model_path": tiny_qwen, "max_new_tokens": 3},
        # Nothing listens on port 9: only configuration and construction are checked.
        "openai_api": {"model": "m", "base_url": "http://127.0.0.1:9/v1"},
        "scripted": {},
    }


def test_every_key_has_a_minimal_config(minimal_configs: dict[str, dict[str, Any]]) -> None:
    assert sorted(minimal_configs) == sorted(CAPTIONERS)


@pytest.mark.parametrize("key", sorted(CAPTIONERS))
def test_config_model_shape(key: str, minimal_configs: dict[str, dict[str, Any]]) -> None:
    model: type[BaseModel] = CAPTIONERS[key]
    assert model.model_config.get("extra") == "forbid" and model.model_config.get("frozen")
    assert get_args(model.model_fields["type"].annotation) == (key,)
    config = model(**minimal_configs[key])
    assert config.type == key  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="not_a_setting"):
        model(**minimal_configs[key], not_a_setting=1)
    with pytest.raises(ValidationError):
        config.type = "other"  # type: ignore[attr-defined]


@pytest.mark.parametrize("key", sorted(CAPTIONERS))
def test_built_captioner_follows_the_protocol(
    key: str, minimal_configs: dict[str, dict[str, Any]], photos: dict[str, np.ndarray]
) -> None:
    captioner = CAPTIONERS[key](**minimal_configs[key]).build()  # type: ignore[attr-defined]
    assert isinstance(captioner, Captioner)
    assert captioner.model.startswith(key) and captioner.prompt_version
    contexts = [CaptionContext("a", "Eileen Collins"), CaptionContext("b")]
    images = [photos["astronaut"], photos["coffee"]]
    with pytest.raises(ValueError, match="1 images for 2 contexts"):
        captioner.caption(images[:1], contexts)
    with pytest.raises(ValueError, match="expected HxWx3 uint8"):
        captioner.caption([images[0], images[1].astype(np.float32)], contexts)
    if key == "openai_api":
        return  # talks to a server: see test_openai_api.py
    batch = caption_batch(captioner, images, contexts, CleaningConfig())
    assert [r.sample_id for r in batch.records] == ["a", "b"]
    assert all(r.model == captioner.model for r in batch.records)
    assert set(batch.columns()) == set(S.CAPTION_RECORD_COLUMNS)
    if not captioner.needs_pixels:
        again = caption_batch(captioner, [], contexts, CleaningConfig()).records
        assert [r.caption for r in again] == [r.caption for r in batch.records]
