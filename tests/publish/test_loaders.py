"""The published tars load with webdataset, wids and Hugging Face datasets."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

from tests.publish.synthetic import HOSTILE_ID, N_PUBLISHED, sid

TARS = ["00000.tar", "00001.tar", "00002.tar"]


def test_webdataset_decodes_every_sample(published_run: Path) -> None:
    import webdataset as wds

    urls = [str(published_run / "shards" / t) for t in TARS]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
    assert len(samples) == N_PUBLISHED
    first = samples[0]
    assert first["jpg"].size == (384, 384)  # astronaut_crop
    assert first["json"]["sample_id"] == HOSTILE_ID
    assert first["txt"] == "A photo of astronaut crop, close-up."
    assert {s["json"]["sample_id"] for s in samples} >= {sid("a0"), sid("b2")}


def test_wids_reads_the_index(published_run: Path, tmp_path: Path) -> None:
    from functools import partial

    import wids
    from wids.wids import default_decoder

    ds = wids.ShardListDataset(
        str(published_run / "shards" / "wids-index.json"),
        cache_dir=str(tmp_path / "cache"),
        transformations=[partial(default_decoder, format="PIL")],
    )
    assert len(ds) == N_PUBLISHED
    sample = ds[3]
    assert sample[".json"]["sample_id"] == sid("b2")
    assert sample[".jpg"].size == (512, 512)


def test_hf_datasets_loads_the_tars(published_run: Path, tmp_path: Path) -> None:
    from datasets import load_dataset

    files = [str(published_run / "shards" / t) for t in TARS]
    ds = load_dataset(
        "webdataset", data_files={"train": files}, split="train", cache_dir=str(tmp_path)
    )
    assert ds.num_rows == N_PUBLISHED
    assert ds[0]["txt"] == "A photo of astronaut crop, close-up."
    assert ds[0]["json"]["sample_id"] == HOSTILE_ID
    assert ds[5]["json"]["sample_id"] == sid("b1")
    assert ds[5]["jpg"].size == (384, 450)  # grace_hopper_crop
