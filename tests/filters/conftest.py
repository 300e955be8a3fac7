"""Public-domain test photos that ship in installed packages, decoded once per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def encode(image: np.ndarray | Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    """Bytes of ``image`` saved by Pillow in ``fmt``."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buffer = io.BytesIO()
    pil.save(buffer, format=fmt, **params)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """astronaut and grace_hopper (one face each); coffee, rocket, chelsea (no human face)."""
    from matplotlib import cbook
    from skimage import data

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as grace:
        grace_hopper = np.asarray(grace.convert("RGB"))
    return {
        "astronaut": data.astronaut(),
        "grace_hopper": grace_hopper,
        "coffee": data.coffee(),
        "rocket": data.rocket(),
        "chelsea": data.chelsea(),
    }


# A two-layer CLIP in open_clip's own config format, so plumbing tests run in seconds.
TINY_CLIP = "laionface-test-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="session")
def clip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights of a tiny CLIP (registered as ``TINY_CLIP``) saved as a local checkpoint;
    for plumbing tests only."""
    import json

    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("clip")
    (folder / f"{TINY_CLIP}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(folder / f"{TINY_CLIP}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_CLIP, pretrained=None)
    path = folder / "tiny-clip-random.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def heads(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An improved-aesthetic-predictor-shaped MLP and a 2-way linear watermark head for
    ``TINY_CLIP`` embeddings (random weights, plumbing only)."""
    import torch

    embed = TINY_CLIP_CONFIG["embed_dim"]
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("heads")
    mlp = torch.nn.Sequential(
        torch.nn.Linear(embed, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1)
    )
    aesthetic = folder / "aesthetic.pth"
    torch.save({f"layers.{k}": v for k, v in mlp.state_dict().items()}, aesthetic)
    watermark = folder / "watermark.pth"
    torch.save(torch.nn.Linear(embed, 2).state_dict(), watermark)
    return aesthetic, watermark
