"""The training stream over the final WebDataset shards (``proxt2i.corpus`` does the loading).

Resampled and shuffled (an endless stream; each node and DataLoader worker draws shards
independently), decoded to batches of (images in [-1, 1] of shape (B, 3, R, R), captions).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from proxt2i.corpus import CaptionChoice, corpus_stream, image_transform, iterate_batches

__all__ = ["image_transform", "webdataset_batches"]


def webdataset_batches(
    shards: str,
    resolution: int,
    batch_size: int,
    shuffle_buffer: int,
    num_workers: int = 0,
    caption: CaptionChoice = "long",
    short_probability: float = 0.3,
    hands_subset_ratio: float = 0.0,
) -> Iterator[tuple[torch.Tensor, list[str]]]:
    """An endless iterator of training batches from tar shards."""
    stream = corpus_stream(
        shards, resolution, caption, short_probability, shuffle_buffer, hands_subset_ratio
    )
    yield from iterate_batches(stream, batch_size, num_workers)
