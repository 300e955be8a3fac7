"""Batched vs one-at-a-time captioning on the tiny Qwen2-VL, same inputs, one run.

    python bench/caption.py [--images 32] [--batch-size 8] [--max-new-tokens 16]

Prints images/s and generated tokens/s of both and the speed-up ratio. The checkpoint is the
random-weight tiny model of the tests, so the numbers measure the pipeline's batching
(padding, grouping by size, one generate call per batch), not a real VLM.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench.*` from anywhere

import numpy as np
from skimage import data

from bench.tiny_models import build_tiny_qwen2_vl
from captioners import (
    CaptionContext,
    CaptionStats,
    CleaningConfig,
    HfVlmConfig,
    caption_batch,
)


def _inputs(count: int) -> tuple[list[np.ndarray], list[CaptionContext]]:
    """Crops of four test photos, in several sizes, as a shard would mix them."""
    sources = [data.astronaut(), data.coffee(), data.rocket(), data.chelsea()]
    images = []
    for i in range(count):
        photo = sources[i % len(sources)]
        step = 1 + (i // len(sources)) % 3  # full, half and third resolution
        images.append(np.ascontiguousarray(photo[::step, ::step]))
    return images, [CaptionContext(f"s{i:04d}", f"photo {i}") for i in range(count)]


def _run(
    config: HfVlmConfig, images: list[np.ndarray], contexts: list[CaptionContext]
) -> CaptionStats:
    captioner = config.build()
    caption_batch(captioner, images[:2], contexts[:2], CleaningConfig())  # warm-up
    return caption_batch(captioner, images, contexts, CleaningConfig()).stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()
    images, contexts = _inputs(args.images)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_qwen2_vl(Path(tmp) / "tiny-qwen2-vl")
        common = {"model_path": path, "max_new_tokens": args.max_new_tokens, "device": "auto"}
        single = _run(HfVlmConfig(batch_size=1, **common), images, contexts)
        batched = _run(HfVlmConfig(batch_size=args.batch_size, **common), images, contexts)
    for name, stats in (("one-at-a-time", single), (f"batch={args.batch_size}", batched)):
        print(
            f"{name:>14}: {stats.images} images in {stats.seconds:6.2f} s  "
            f"{stats.images_per_s:7.2f} images/s  {stats.tokens_per_s:8.1f} tokens/s"
        )
    ratio = batched.images_per_s / single.images_per_s
    print(f"speed-up (batched / one-at-a-time images/s): {ratio:.2f}x")


if __name__ == "__main__":
    main()
