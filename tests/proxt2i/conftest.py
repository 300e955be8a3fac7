"""Shared fixtures: small WebDataset shards of real photos and a tiny trained checkpoint."""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

CAPTIONS = ("a close-up photo of a face", "a portrait of a person smiling")


def photos() -> list[np.ndarray]:
    """lfw_subset face crops (25x25 gray -> RGB) plus the astronaut portrait."""
    from skimage import data

    faces = [
        np.repeat((f * 255).astype(np.uint8)[..., None], 3, axis=2) for f in data.lfw_subset()[:15]
    ]
    return [*faces, data.astronaut()]


def write_shard(path: Path, images: list[np.ndarray], start: int) -> None:
    import webdataset as wds

    with wds.TarWriter(str(path)) as sink:
        for i, im in enumerate(images):
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="JPEG", quality=95)
            key = f"{start + i:016x}"
            meta = {"sample_id": key, "source": "skimage"}
            sink.write(
                {
                    "__key__": key,
                    "jpg": buf.getvalue(),
                    "txt": CAPTIONS[i % 2],
                    "json": json.dumps(meta).encode(),
                }
            )


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """One intra-op thread: these networks are too small to gain from more, and on a shared
    machine torch's spinning worker threads make each call up to 100x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def single_thread() -> Iterator[None]:
    """Every proxt2i test module runs single-threaded (restored after it, for other packages)."""
    with one_thread():
        yield


@pytest.fixture(scope="session")
def shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two tar shards of 8 real photos each; returns the brace pattern."""
    root = tmp_path_factory.mktemp("shards")
    ims = photos()
    write_shard(root / "00000.tar", ims[:8], 0)
    write_shard(root / "00001.tar", ims[8:], 8)
    return str(root / "{00000..00001}.tar")


TEST_STEP_COUNTS = [2, 3, 5]  # the grids the tests sample on, so the guards allow them


def cpu_config(shards: str, out_dir: Path, steps: int = 3) -> dict:
    """The CPU preset with test-sized overrides (both objectives, so every sampler works)."""
    base = Path(__file__).parents[2] / "configs" / "proxt2i-cpu.yaml"
    tree = yaml.safe_load(base.read_text())
    tree["out_dir"] = str(out_dir)
    tree["steps"] = steps
    tree["data"].update(shards=shards, batch_size=4, shuffle_buffer=8)
    tree["objectives"][0]["step_counts"] = TEST_STEP_COUNTS
    return tree


@pytest.fixture(scope="session")
def tiny_checkpoint(shards: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from proxt2i import api

    root = tmp_path_factory.mktemp("run")
    cfg = root / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(cpu_config(shards, root / "out")))
    with one_thread():  # session fixtures are set up before the module-scoped single_thread
        return api.train(cfg, [])


@pytest.fixture(scope="session")
def backward_checkpoint(shards: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One step of a prox-only network for pda_backward at N = 10, without caption dropout."""
    from proxt2i import api

    root = tmp_path_factory.mktemp("backward")
    tree = cpu_config(shards, root / "out", steps=1)
    tree["objectives"] = [
        {"type": "prox_matching", "discretization": "backward", "step_counts": [10]}
    ]
    tree["data"]["caption_dropout"] = 0.0
    (root / "c.yaml").write_text(yaml.safe_dump(tree))
    with one_thread():
        return api.train(root / "c.yaml", [])


TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_open_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, architecture json) of a random-weight open_clip model."""
    import open_clip

    root = tmp_path_factory.mktemp("clip")
    arch = root / "tiny-clip.json"
    arch.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(arch)  # open_clip's public registry: named by the file stem
    torch.save(open_clip.create_model("tiny-clip", pretrained=None).state_dict(), root / "m.pt")
    return root / "m.pt", arch
