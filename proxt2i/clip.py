"""open_clip models from a local checkpoint, shared by the text encoder and the CLIP score."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any


@functools.lru_cache(maxsize=4)
def load_open_clip(name: str, checkpoint: str, config_json: str | None) -> tuple[Any, Any, Any]:
    """(model, preprocess, tokenizer) in eval mode; `config_json` registers a custom architecture.

    `checkpoint` must be a local file: open_clip only downloads for named tags, never for paths.
    """
    try:
        import open_clip
    except ImportError as exc:  # pragma: no cover - open_clip_torch is a core dependency
        raise ImportError("CLIP needs open_clip_torch: pip install open_clip_torch") from exc
    if not Path(checkpoint).is_file():
        raise ValueError(f"CLIP checkpoint not found: {checkpoint} (give a local .pt/.bin path)")
    if config_json is not None:
        open_clip.factory._MODEL_CONFIGS[name] = json.loads(Path(config_json).read_text())
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=checkpoint)
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(name)
