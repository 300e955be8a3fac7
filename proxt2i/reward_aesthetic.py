"""`aesthetic`: a linear (or linear-chain) head on the L2-normalised open_clip image embedding,
the layout of LAION's aesthetic predictor and of the improved-aesthetic-predictor MLP
(loaded by the pipeline's own `filters.clip_model.load_linear_head`). Both model files are
local paths; the prompt is not used. The reward is the head's raw output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict


class AestheticReward:
    name = "aesthetic"

    def __init__(self, clip: tuple[Any, Any, Any], head: Any) -> None:
        self.model, self.preprocess, _ = clip
        self.head = head

    @torch.no_grad()
    def score(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        """uint8 (B, H, W, 3) -> float64 (B,) head outputs; `prompts` are ignored."""
        from PIL import Image

        pixels = torch.stack([self.preprocess(Image.fromarray(im)) for im in images])
        emb = torch.nn.functional.normalize(self.model.encode_image(pixels).float(), dim=-1)
        return self.head(emb)[:, 0].double().numpy()


class AestheticConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["aesthetic"] = "aesthetic"
    model_name: str  # open_clip architecture; LAION's heads read ViT-L-14 embeddings
    checkpoint: Path  # local open_clip weights
    head: Path  # local state dict of the head's Linear layers
    architecture_json: Path | None = None  # open_clip config of a custom architecture

    def build(self) -> AestheticReward:
        from filters.clip_model import load_linear_head, load_open_clip

        arch = str(self.architecture_json) if self.architecture_json else None
        clip = load_open_clip(self.model_name, str(self.checkpoint), arch)
        return AestheticReward(clip, load_linear_head(Path(self.head), "cpu"))
