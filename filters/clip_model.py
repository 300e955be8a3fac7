"""open_clip loading and batched scoring for the ``clip`` filter (torch imported lazily)."""

from __future__ import annotations

import functools
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from filters.detectors.base import MissingModelError
from manifests import schema as S


@dataclass(frozen=True)
class ClipScorer:
    """A loaded open_clip model with its preprocessing, tokenizer and optional heads."""

    model: Any
    preprocess: Any
    tokenizer: Any
    aesthetic: Any | None
    watermark: Any | None
    device: str

    def score(self, images: Sequence[np.ndarray], texts: Sequence[str]) -> dict[str, list[Any]]:
        """Similarity (and head outputs, None without a head) for aligned images and texts."""
        import torch
        from PIL import Image

        pixels = torch.stack([self.preprocess(Image.fromarray(i)) for i in images])
        with torch.inference_mode():
            image = self.model.encode_image(pixels.to(self.device)).float()
            text = self.model.encode_text(self.tokenizer(list(texts)).to(self.device)).float()
            image = torch.nn.functional.normalize(image, dim=-1)
            text = torch.nn.functional.normalize(text, dim=-1)
            similarity = (image * text).sum(dim=-1)
            aesthetic = _head_output(self.aesthetic, image, probability=False)
            watermark = _head_output(self.watermark, image, probability=True)
        return {
            S.CLIP_SIMILARITY: similarity.cpu().tolist(),
            S.AESTHETIC_SCORE: aesthetic or [None] * len(images),
            S.WATERMARK_SCORE: watermark or [None] * len(images),
        }


def _head_output(head: Any | None, embedding: Any, probability: bool) -> list[float] | None:
    """Head output per row; as a probability: sigmoid of 1 output or softmax[1] of 2."""
    if head is None:
        return None
    out = head(embedding)
    if probability:
        out = out.sigmoid()[:, 0] if out.shape[1] == 1 else out.softmax(dim=1)[:, 1]
    else:
        out = out[:, 0]
    return [float(v) for v in out.cpu().tolist()]


def load_linear_head(path: Path, device: str) -> Any:
    """``nn.Sequential`` of the ``Linear`` layers in a state dict, in their stored order.

    Accepts ``weight``/``bias`` (a single layer) or ``<prefix>.<i>.weight`` chains; dropout
    layers between them have no weights and are identity at inference.
    """
    import torch

    if not path.is_file():
        raise MissingModelError(f"head weights not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    prefixes = list(
        dict.fromkeys(re.sub(r"\.?weight$", "", k) for k in state if k.endswith("weight"))
    )
    layers = []
    for prefix in prefixes:
        dot = f"{prefix}." if prefix else ""
        weight, bias = state[f"{dot}weight"], state.get(f"{dot}bias")
        layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        layer.load_state_dict({"weight": weight, **({"bias": bias} if bias is not None else {})})
        layers.append(layer)
    return torch.nn.Sequential(*layers).to(device).eval()


class OpenClipModel(NamedTuple):
    """An open_clip model in eval mode with its image preprocessing and tokenizer."""

    model: Any
    preprocess: Any
    tokenizer: Any


@functools.lru_cache(maxsize=4)
def load_open_clip(
    model_name: str,
    checkpoint: Path | str | None,
    architecture_json: Path | str | None = None,
    device: str = "cpu",
) -> OpenClipModel:
    """The one open_clip loader (the clip filter, proxt2i's text encoder and rewards), cached per
    process so that one model serves every user of the same files.

    `checkpoint` must be a local file: open_clip downloads only for named tags, never for a
    path. `architecture_json` adds a custom architecture named `model_name` (its file name).
    """
    import open_clip

    if checkpoint is None or not Path(checkpoint).is_file():
        raise MissingModelError(
            f"open_clip checkpoint not found: {checkpoint} (give a local .pt/.bin file)"
        )
    if architecture_json is not None:
        add_architecture(model_name, Path(architecture_json))
    model, _, preprocess = open_clip.create_model_and_transforms(
        model_name, pretrained=str(checkpoint), device=device
    )
    model.eval()
    return OpenClipModel(model, preprocess, open_clip.get_tokenizer(model_name))


def add_architecture(model_name: str, path: Path) -> None:
    """Register an open_clip model config JSON under `model_name` through open_clip's public
    `add_model_config`, which names an architecture by its file's stem: a file of another name
    is registered from a copy named `<model_name>.json` in a temporary folder."""
    import open_clip

    if not path.is_file():
        raise MissingModelError(f"open_clip architecture JSON not found: {path}")
    if path.stem == model_name:
        open_clip.add_model_config(path)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            named = Path(tmp) / f"{model_name}.json"
            shutil.copyfile(path, named)
            open_clip.add_model_config(named)
    if model_name not in open_clip.list_models():  # open_clip skips files that are no config
        raise ValueError(
            f"{path} is not an open_clip model config (it needs embed_dim, vision_cfg, text_cfg)"
        )


def load_clip_scorer(
    model_name: str,
    checkpoint: Path | None,
    aesthetic_head: Path | None,
    watermark_head: Path | None,
    device: str,
) -> ClipScorer:
    """Build the scorer from local files only (a missing file is a ``MissingModelError``)."""
    clip = load_open_clip(model_name, checkpoint, device=device)
    return ClipScorer(
        model=clip.model,
        preprocess=clip.preprocess,
        tokenizer=clip.tokenizer,
        aesthetic=load_linear_head(aesthetic_head, device) if aesthetic_head else None,
        watermark=load_linear_head(watermark_head, device) if watermark_head else None,
        device=device,
    )
