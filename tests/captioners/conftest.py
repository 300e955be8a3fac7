"""Fixtures of the captioner tests: tiny VLM checkpoints and the public-domain test photos."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest

from bench.tiny_models import build_tiny_blip, build_tiny_qwen2_vl


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl"))


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real photos of different sizes: two portraits and two non-face images."""
    import matplotlib.cbook
    from PIL import Image
    from skimage import data

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    return {
        "astronaut": data.astronaut(),  # 512x512
        "grace_hopper": hopper,  # 600x512
        "coffee": data.coffee(),  # 400x600
        "rocket": data.rocket(),  # 427x640
    }
