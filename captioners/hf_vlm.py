"""``hf_vlm``: a transformers vision-language model loaded from a local directory.

Tested families: Qwen2-VL / Qwen2.5-VL, SmolVLM / Idefics3, LLaVA, BLIP / BLIP-2 and
Florence-2, all through ``AutoProcessor`` + ``AutoModelForImageTextToText``. Nothing is ever
downloaded (``local_files_only=True``); the model loads once per process (``lru_cache``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from captioners.base import CaptionContext, RawCaption, check_batch
from captioners.prompts import DEFAULT_PROMPT_VERSION, Prompt, PromptVersion, get_prompt
from manifests.device import WorkerDevice
from manifests.fingerprint import OPERATIONAL
from manifests.model_paths import checks_model_paths

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

# Processors of these families take one list of images per text, not a flat list.
_NESTED_IMAGE_MODELS = frozenset({"idefics2", "idefics3", "smolvlm"})


class HfVlmConfig(BaseModel):
    """Model directory, device and generation settings of a transformers VLM."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["hf_vlm"] = "hf_vlm"
    model_path: Path
    name: str | None = None  # recorded as "hf_vlm:<name>"; default the directory name
    auto_class: Literal["image_text_to_text", "causal_lm"] = "image_text_to_text"
    trust_remote_code: bool = False  # only for checkpoints whose code ships in model_path
    # Not operational: with dtype "auto" the device also picks the precision (bf16 / fp32).
    device: str = "auto"  # "auto": cuda when available, else cpu
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    # e.g. "sdpa", "flash_attention_2": kernels of the same attention, so speed only.
    attn_implementation: str | None = Field(None, json_schema_extra=OPERATIONAL)
    batch_size: int = Field(8, gt=0, json_schema_extra=OPERATIONAL)
    max_image_side: int | None = Field(1024, gt=0)  # longer side, resized before the processor
    prompt_version: PromptVersion = DEFAULT_PROMPT_VERSION
    use_chat_template: bool = True
    # Used when the chat template is off or absent: "Question: {prompt} Answer:" for BLIP-2,
    # "<MORE_DETAILED_CAPTION>" for Florence-2, "" for BLIP's unconditional captions.
    text_template: str = "{prompt}"
    max_new_tokens: int = Field(256, gt=0)
    short_caption: bool = False  # a second generation with the short prompt
    short_max_new_tokens: int = Field(48, gt=0)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int | None = Field(None, gt=0)
    num_beams: int = Field(1, gt=0)
    repetition_penalty: float | None = Field(None, gt=0)
    seed: int = 0

    @field_validator("model_path")
    @classmethod
    def _model_dir_exists(cls, path: Path, info: ValidationInfo) -> Path:
        if checks_model_paths(info) and not (path / "config.json").is_file():
            raise ValueError(
                f"model directory {path} has no config.json; models are never downloaded, "
                "place the checkpoint (save_pretrained / huggingface-cli download) there"
            )
        return path

    def build(self) -> HfVlmCaptioner:
        return _load_captioner(self)


def size_groups(shapes: Sequence[tuple[int, ...]], batch_size: int) -> list[list[int]]:
    """Indices batched by image size, so one batch pads to similar numbers of image tokens."""
    order = sorted(range(len(shapes)), key=lambda i: (shapes[i][0] * shapes[i][1], shapes[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        # bf16 where the GPU supports it; float32 on CPU, where half precision is slow.
        cuda = device.startswith("cuda")
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, dtype)


@lru_cache(maxsize=2)
def _load_captioner(config: HfVlmConfig) -> HfVlmCaptioner:
    """Load processor and model once per process for this configuration."""
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - transformers is a core dependency
        raise ImportError("hf_vlm needs transformers: pip install 'transformers>=4.45'") from err
    device = WorkerDevice.current().torch_device(config.device)
    dtype = _resolve_dtype(config.dtype, device)
    path = str(config.model_path)
    common: dict[str, Any] = {
        "local_files_only": True,
        "trust_remote_code": config.trust_remote_code,
    }
    processor = transformers.AutoProcessor.from_pretrained(path, **common)
    auto = {
        "image_text_to_text": transformers.AutoModelForImageTextToText,
        "causal_lm": transformers.AutoModelForCausalLM,
    }[config.auto_class]
    extra = (
        {"attn_implementation": config.attn_implementation} if config.attn_implementation else {}
    )
    model = auto.from_pretrained(path, dtype=dtype, **common, **extra).to(device).eval()
    log.info("hf_vlm: loaded %s (%s) on %s as %s", path, type(model).__name__, device, dtype)
    return HfVlmCaptioner(config, processor, model)


class HfVlmCaptioner:
    """Batched captioning with a loaded processor and model."""

    needs_pixels = True

    def __init__(self, config: HfVlmConfig, processor: Any, model: Any) -> None:
        self.config = config
        self.processor = processor
        self.network = model
        self.model = f"hf_vlm:{config.name or config.model_path.name}"
        self.prompt: Prompt = get_prompt(config.prompt_version)
        self._chat = config.use_chat_template and bool(getattr(processor, "chat_template", None))
        uses_prompt = self._chat or "{prompt}" in config.text_template
        self.prompt_version = (
            config.prompt_version if uses_prompt else config.text_template or "none"
        )
        self._nested = getattr(model.config, "model_type", "") in _NESTED_IMAGE_MODELS
        tokenizer = getattr(processor, "tokenizer", processor)
        if not getattr(model.config, "is_encoder_decoder", False):
            tokenizer.padding_side = "left"  # decoder-only models continue from the right
        self._pad_id = tokenizer.pad_token_id

    def caption(
        self, images: Sequence[np.ndarray], contexts: Sequence[CaptionContext]
    ) -> list[RawCaption]:
        check_batch(images, contexts, self.needs_pixels)
        results: list[RawCaption | None] = [None] * len(contexts)
        for group in size_groups([im.shape for im in images], self.config.batch_size):
            batch_contexts = [contexts[i] for i in group]
            pil = [self.prepare_image(images[i]) for i in group]
            for i, raw in zip(group, self._caption_group(pil, batch_contexts), strict=True):
                results[i] = raw
        return [r for r in results if r is not None]

    def _caption_group(
        self, images: list[Image.Image], contexts: list[CaptionContext]
    ) -> list[RawCaption]:
        start = time.perf_counter()
        prompts = [self.prompt.render_long(c) for c in contexts]
        texts, tokens = self.generate(images, prompts, self.config.max_new_tokens)
        shorts: list[str | None] = [None] * len(contexts)
        if self.config.short_caption:
            prompts = [self.prompt.render_short(c) for c in contexts]
            short_texts, short_tokens = self.generate(
                images, prompts, self.config.short_max_new_tokens
            )
            shorts = list(short_texts)
            tokens = [a + b for a, b in zip(tokens, short_tokens, strict=True)]
        share = (time.perf_counter() - start) / len(contexts)
        return [
            RawCaption(text, short=short, generated_tokens=n, seconds=share)
            for text, short, n in zip(texts, shorts, tokens, strict=True)
        ]

    def prepare_image(self, image: np.ndarray) -> Image.Image:
        from PIL import Image

        pil = Image.fromarray(image)
        side = self.config.max_image_side
        if side is not None and max(pil.size) > side:
            scale = side / max(pil.size)
            size = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
            pil = pil.resize(size, Image.Resampling.BICUBIC)
        return pil

    def prompt_text(self, prompt: str) -> str:
        """The model input text for one instruction (chat template or ``text_template``)."""
        if self._chat:
            content = [{"type": "image"}, {"type": "text", "text": prompt}]
            messages = [{"role": "user", "content": content}]
            return str(self.processor.apply_chat_template(messages, add_generation_prompt=True))
        return self.config.text_template.replace("{prompt}", prompt)

    def _inputs(self, images: list[Image.Image], prompts: list[str]) -> Any:
        texts = [self.prompt_text(p) for p in prompts]
        batch_images: list[Any] = [[im] for im in images] if self._nested else list(images)
        text_arg = texts if any(texts) else None  # BLIP: unconditional captioning
        inputs = self.processor(
            text=text_arg, images=batch_images, padding=True, return_tensors="pt"
        )
        dtype = self.network.dtype
        return {
            k: v.to(self.network.device, dtype=dtype if v.is_floating_point() else None)
            for k, v in inputs.items()
        }

    def _generation_kwargs(self, max_new_tokens: int) -> dict[str, Any]:
        c = self.config
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "num_beams": c.num_beams}
        kwargs["do_sample"] = c.do_sample
        if c.do_sample:
            kwargs.update(temperature=c.temperature, top_p=c.top_p)
            if c.top_k is not None:
                kwargs["top_k"] = c.top_k
        if c.repetition_penalty is not None:
            kwargs["repetition_penalty"] = c.repetition_penalty
        return kwargs

    def generate(
        self, images: list[Image.Image], prompts: list[str], max_new_tokens: int
    ) -> tuple[list[str], list[int]]:
        """Decoded new text and generated-token counts for one batch."""
        import torch

        inputs = self._inputs(images, prompts)
        if self.config.do_sample:
            torch.manual_seed(self.config.seed)
        with torch.inference_mode():
            out = self.network.generate(**inputs, **self._generation_kwargs(max_new_tokens))
        new = _strip_prompt(out, inputs.get("input_ids"))
        counts = (new != self._pad_id).sum(dim=1) if self._pad_id is not None else None
        texts = self.processor.batch_decode(new, skip_special_tokens=True)
        tokens = [int(n) for n in counts] if counts is not None else [new.shape[1]] * len(texts)
        return [t.strip() for t in texts], tokens


def _strip_prompt(out: Any, input_ids: Any) -> Any:
    """Generated tokens only: decoder-only models echo the prompt, encoder-decoders do not."""
    if input_ids is None or out.shape[1] < input_ids.shape[1]:
        return out
    length = input_ids.shape[1]
    if bool((out[:, :length] == input_ids).all()):
        return out[:, length:]
    return out
