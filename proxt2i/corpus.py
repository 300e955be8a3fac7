"""Loading the published corpus (``RUN/shards``) for training.

Two ways, both yielding ``(image tensor in [-1, 1] of shape (3, R, R), caption)``:

- ``corpus_stream``: a webdataset pipeline over the tar URLs: resampled (an endless stream,
  shards drawn with replacement), shuffled, split by node and by DataLoader worker, decoded,
  resized and center-cropped to the training size, with caption selection.
- ``IndexedCorpus``: a wids ``ShardListDataset`` over ``wids-index.json``, indexable by
  position, for exact epochs (each sample once per epoch, e.g. with
  ``wids.DistributedChunkedSampler``).

Caption selection: ``long`` (the ``txt`` member, the fine-grained caption), ``short`` (the
``caption_short`` field of the ``json`` member, falling back to long), or ``mixed`` (short with
probability ``short_probability``, seeded per sample so a rerun draws the same captions).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from PIL import Image
from torchvision.transforms import v2

CaptionChoice = Literal["long", "short", "mixed"]


def image_transform(resolution: int) -> v2.Compose:
    """Resize the short side, center-crop, scale to [-1, 1]."""
    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.Resize(resolution, antialias=True),
            v2.CenterCrop(resolution),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]),
        ]
    )


def select_caption(
    long: str, meta: dict[str, Any], choice: CaptionChoice, short_probability: float, key: str
) -> str:
    """The caption a training sample uses (see the module docstring)."""
    short = meta.get("caption_short") or long
    if choice == "long":
        return long
    if choice == "short":
        return str(short)
    # A per-sample coin from the key: deterministic across runs and workers.
    coin = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return str(short) if coin < short_probability else long


def corpus_stream(
    urls: str | list[str],
    resolution: int,
    caption: CaptionChoice = "long",
    short_probability: float = 0.3,
    shuffle_buffer: int = 1000,
) -> Any:
    """An endless, shuffled webdataset of (image, caption) over the tar ``urls``."""
    import webdataset as wds

    transform = image_transform(resolution)

    def to_pair(sample: dict[str, Any]) -> tuple[torch.Tensor, str]:
        meta = json.loads(sample["json"]) if "json" in sample else {}
        text = sample["txt"].decode("utf-8") if isinstance(sample["txt"], bytes) else sample["txt"]
        image = Image.open(io.BytesIO(sample["jpg"])).convert("RGB")
        chosen = select_caption(text, meta, caption, short_probability, sample["__key__"])
        return transform(image), chosen

    return (
        wds.WebDataset(
            urls,
            resampled=True,
            shardshuffle=False,  # resampled already draws shards at random
            nodesplitter=wds.split_by_node,
            workersplitter=wds.split_by_worker,
            handler=wds.warn_and_continue,
        )
        .shuffle(shuffle_buffer)
        .map(to_pair, handler=wds.warn_and_continue)
    )


class IndexedCorpus(torch.utils.data.Dataset):
    """The corpus by position, through its wids index: ``len`` is the number of samples."""

    def __init__(
        self,
        index: Path,
        resolution: int,
        caption: CaptionChoice = "long",
        short_probability: float = 0.3,
        cache_dir: Path | None = None,
    ) -> None:
        import wids

        self._data = wids.ShardListDataset(
            str(index), cache_dir=str(cache_dir) if cache_dir else None, keep=True
        )
        self._transform = image_transform(resolution)
        self._caption = caption
        self._short_probability = short_probability

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        sample = self._data[i]
        image = _as_image(sample[".jpg"])
        text = _as_text(sample[".txt"])
        meta = _as_json(sample.get(".json"))
        chosen = select_caption(
            text, meta, self._caption, self._short_probability, sample["__key__"]
        )
        return self._transform(image.convert("RGB")), chosen


def _as_image(value: Any) -> Image.Image:
    if isinstance(value, Image.Image):
        return value
    data = value.read() if hasattr(value, "read") else value
    return Image.open(io.BytesIO(data))


def _as_text(value: Any) -> str:
    data = value.read() if hasattr(value, "read") else value
    return data.decode("utf-8") if isinstance(data, bytes) else str(data)


def _as_json(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    return dict(json.loads(_as_text(value)))


def iterate_batches(
    dataset: Any, batch_size: int, num_workers: int = 0
) -> Iterator[tuple[torch.Tensor, list[str]]]:
    """Batches of a corpus stream or indexed corpus through a torch DataLoader."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    for images, captions in loader:
        yield images, list(captions)
