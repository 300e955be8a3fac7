"""Loading the published corpus (``RUN/shards``) for training.

Two ways, both yielding ``(image tensor in [-1, 1] of shape (3, R, R), caption)``:

- ``corpus_stream``: a webdataset pipeline over the tar URLs: resampled (an endless stream,
  shards drawn with replacement), shuffled, split by node and by DataLoader worker, decoded,
  resized and center-cropped to the training size, with caption selection.
- ``IndexedCorpus``: a wids ``ShardListDataset`` over ``wids-index.json``, indexable by
  position, for exact epochs (each sample once per epoch, e.g. with
  ``wids.DistributedChunkedSampler``).

The hand-focused subset (``hands_subset``, a tag in each sample's json; the shard stage
writes its sample list ``hands-subset.json`` and wids index beside the tars) can be mixed in at
a given ratio: ``corpus_stream(subset_ratio=...)`` draws that share of the stream from tagged
samples, and ``SubsetMixSampler`` does the same by position over an ``IndexedCorpus``.

Caption selection: ``long`` (the ``txt`` member, the fine-grained caption), ``short`` (the
``caption_short`` field of the ``json`` member, falling back to long), or ``mixed`` (short with
probability ``short_probability``, seeded per sample so a rerun draws the same captions).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

CaptionChoice = Literal["long", "short", "mixed"]
# The tag and the sample list the shard stage writes (stages.shard.subsets; the trainer reads
# only the published files, so the names are repeated here and a test checks they agree).
HANDS_TAG = "hands_subset"
HANDS_SUBSET_LIST = "hands-subset.json"
HANDS_SUBSET_WIDS = "hands-subset.wids-index.json"


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
    subset_ratio: float = 0.0,
    subset_urls: str | list[str] | None = None,
) -> Any:
    """An endless, shuffled webdataset of (image, caption) over the tar ``urls``.

    With ``subset_ratio`` > 0, that share of the samples (in expectation) is drawn from the
    hand-focused subset: a second stream over ``subset_urls`` (default: ``urls``; the tars of
    ``hands-subset.wids-index.json`` read less) that keeps the tagged samples only.
    """
    import webdataset as wds

    if not 0.0 <= subset_ratio <= 1.0:
        raise ValueError(f"subset_ratio must be in [0, 1], got {subset_ratio}")
    full = _pairs(urls, resolution, caption, short_probability, shuffle_buffer, tagged=False)
    if subset_ratio == 0.0:
        return full
    subset = _pairs(
        subset_urls or urls, resolution, caption, short_probability, shuffle_buffer, tagged=True
    )
    if subset_ratio == 1.0:
        return subset
    return wds.RandomMix([full, subset], probs=[1.0 - subset_ratio, subset_ratio])


def _pairs(
    urls: str | list[str],
    resolution: int,
    caption: CaptionChoice,
    short_probability: float,
    shuffle_buffer: int,
    tagged: bool,
) -> Any:
    """One resampled, shuffled stream of (image, caption); ``tagged``: subset samples only."""
    import webdataset as wds

    transform = image_transform(resolution)

    def to_pair(sample: dict[str, Any]) -> tuple[torch.Tensor, str]:
        meta = _as_json(sample.get("json"))
        text = sample["txt"].decode("utf-8") if isinstance(sample["txt"], bytes) else sample["txt"]
        image = Image.open(io.BytesIO(sample["jpg"])).convert("RGB")
        chosen = select_caption(text, meta, caption, short_probability, sample["__key__"])
        return transform(image), chosen

    stream = wds.WebDataset(
        urls,
        resampled=True,
        shardshuffle=False,  # resampled already draws shards at random
        nodesplitter=wds.split_by_node,
        workersplitter=wds.split_by_worker,
        handler=wds.warn_and_continue,
    )
    if tagged:
        stream = stream.select(lambda sample: _as_json(sample.get("json")).get(HANDS_TAG) is True)
    return stream.shuffle(shuffle_buffer).map(to_pair, handler=wds.warn_and_continue)


def read_subset_positions(shards_dir: Path, name: str = HANDS_SUBSET_LIST) -> list[int]:
    """Positions of the subset's samples in the corpus's ``wids-index.json``."""
    path = Path(shards_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the corpus has no such subset list")
    return [int(i) for i in json.loads(path.read_text(encoding="utf-8"))["positions"]]


class SubsetMixSampler(torch.utils.data.Sampler[int]):
    """Positions over an ``IndexedCorpus`` with a share ``ratio`` drawn from a subset.

    Each of the ``num_samples`` draws (default: the corpus size, one epoch's worth) takes a
    uniform position among ``subset_positions`` with probability ``ratio``, else a uniform
    position of the whole corpus; seeded by ``seed`` and ``set_epoch``, so reruns draw alike.
    """

    def __init__(
        self,
        corpus_size: int,
        subset_positions: Sequence[int],
        ratio: float,
        num_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"ratio must be in [0, 1], got {ratio}")
        if ratio > 0 and not subset_positions:
            raise ValueError("the subset is empty: no sample to mix in (use ratio 0)")
        if any(not 0 <= i < corpus_size for i in subset_positions):
            raise ValueError(f"subset positions fall outside the corpus of {corpus_size}")
        self.corpus_size = corpus_size
        self.subset = np.asarray(subset_positions, dtype=np.int64)
        self.ratio = ratio
        self.num_samples = corpus_size if num_samples is None else num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        from_subset = rng.random(self.num_samples) < self.ratio
        anywhere = rng.integers(0, self.corpus_size, self.num_samples)
        if not len(self.subset):  # ratio 0 (checked in __init__): the whole corpus only
            yield from anywhere.tolist()
            return
        picks = self.subset[rng.integers(0, len(self.subset), self.num_samples)]
        yield from np.where(from_subset, picks, anywhere).tolist()


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
