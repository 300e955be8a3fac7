"""``hf_vlm`` on tiny random-weight checkpoints: plumbing, never meaning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from captioners import CaptionContext, CleaningConfig, HfVlmConfig, caption_batch
from captioners.hf_vlm import size_groups

# The MiniLM tokenizer of the tiny checkpoints carries a max_length that padding ignores.
pytestmark = pytest.mark.filterwarnings("ignore:`max_length` is ignored:UserWarning")

ORDER = ("astronaut", "grace_hopper", "coffee", "rocket")


def _inputs(photos: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[CaptionContext]]:
    # Alt texts of different lengths (prompt v2 quotes them): prompts need padding.
    alts = ["an astronaut", "a rear admiral in uniform at her desk", "coffee", "a rocket launch"]
    contexts = [CaptionContext(name, alt) for name, alt in zip(ORDER, alts, strict=True)]
    return [photos[name] for name in ORDER], contexts


def test_size_groups_batch_similar_sizes() -> None:
    shapes = [(600, 512, 3), (32, 32, 3), (512, 512, 3), (40, 30, 3), (400, 600, 3)]
    assert size_groups(shapes, 2) == [[1, 3], [4, 2], [0]]


def test_missing_model_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=str(tmp_path / "qwen")):
        HfVlmConfig(model_path=tmp_path / "qwen")
    with pytest.raises(ValidationError, match="unknown prompt version 'v0'"):
        HfVlmConfig(model_path=tmp_path, prompt_version="v0")


def test_qwen_batched_equals_one_at_a_time(tiny_qwen: Path, photos: dict) -> None:
    images, contexts = _inputs(photos)
    common = {
        "model_path": tiny_qwen,
        "max_new_tokens": 6,
        "prompt_version": "v2",
        "dtype": "float32",
    }
    batched = HfVlmConfig(batch_size=4, **common).build()
    single = HfVlmConfig(batch_size=1, **common).build()
    assert batched is HfVlmConfig(batch_size=4, **common).build()  # loaded once per process
    left = batched.caption(images, contexts)
    right = single.caption(images, contexts)
    assert [r.text for r in left] == [r.text for r in right]
    assert all(r.text and 1 <= r.generated_tokens <= 6 for r in left)
    assert (batched.model, batched.prompt_version) == (f"hf_vlm:{tiny_qwen.name}", "v2")


def test_qwen_chat_template_short_caption_and_limits(tiny_qwen: Path, photos: dict) -> None:
    images, contexts = _inputs(photos)
    captioner = HfVlmConfig(
        model_path=tiny_qwen, batch_size=3, max_new_tokens=4, short_caption=True,
        short_max_new_tokens=2, max_image_side=100,
    ).build()  # fmt: skip
    assert captioner.prompt_text("Describe.").startswith("<|im_start|>user\n<|vision_start|>")
    assert captioner.prepare_image(photos["coffee"]).size == (100, 67)
    raws = captioner.caption(images, contexts)
    assert [r.short is not None for r in raws] == [True] * 4
    assert all(2 <= r.generated_tokens <= 6 and r.seconds > 0 for r in raws)
    plain = HfVlmConfig(model_path=tiny_qwen, use_chat_template=False).build()
    assert plain.prompt_text("Describe.") == "Describe."


def test_qwen_through_caption_batch_with_cleaning(tiny_qwen: Path, photos: dict) -> None:
    images, contexts = _inputs(photos)
    captioner = HfVlmConfig(model_path=tiny_qwen, batch_size=2, max_new_tokens=10).build()
    batch = caption_batch(captioner, images, contexts, CleaningConfig(max_words=3))
    assert [r.sample_id for r in batch.records] == list(ORDER)
    assert all(r.caption and r.words <= 3 for r in batch.records)
    assert batch.stats.images == 4 and batch.stats.errors == 0
    assert batch.stats.shortened == sum(r.truncated for r in batch.records)
    assert batch.stats.generated_tokens > 0 and batch.stats.images_per_s > 0


def test_bfloat16_weights(tiny_qwen: Path, photos: dict) -> None:
    captioner = HfVlmConfig(model_path=tiny_qwen, dtype="bfloat16", max_new_tokens=3).build()
    assert captioner.network.dtype == torch.bfloat16
    raws = captioner.caption([photos["astronaut"]], [CaptionContext("a")])
    assert 1 <= raws[0].generated_tokens <= 3


def test_blip_without_chat_template(tiny_blip: Path, photos: dict) -> None:
    images, contexts = _inputs(photos)
    unconditional = HfVlmConfig(model_path=tiny_blip, text_template="", max_new_tokens=5).build()
    assert unconditional.prompt_version == "none"
    raws = unconditional.caption(images, contexts)
    # BLIP's decoder returns its start token with the caption: at most 5 + 1 tokens.
    assert all(r.text and 1 <= r.generated_tokens <= 6 for r in raws)
    prefixed = HfVlmConfig(model_path=tiny_blip, text_template="a photo of", batch_size=3)
    captioner = prefixed.model_copy(update={"max_new_tokens": 4}).build()
    assert captioner.prompt_version == "a photo of"
    assert all(r.text.startswith("a photo of") for r in captioner.caption(images, contexts))
