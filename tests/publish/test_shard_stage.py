"""The shard stage on a hand-built run: counts, manifests, tar bytes, indexes, wids, checksums."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from manifests import schema as S
from manifests.io import read_done
from manifests.layout import RunLayout
from stages.shard.plan import SHARD_COLUMNS
from stages.shard.records import member_key
from stages.shard.stage import ShardConfig
from tests.publish.conftest import publish
from tests.publish.synthetic import HOSTILE_ID, N_PUBLISHED, SHARDS, build_run, sid

OUT = "shards"
TARS = ["00000.tar", "00001.tar", "00002.tar"]


def _tar_names(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


def test_published_files(published_run: Path) -> None:
    out = published_run / OUT
    names = sorted(p.name for p in out.iterdir())
    indexes = [t.replace(".tar", ".parquet") for t in TARS]
    assert names == sorted([*TARS, *indexes, "README.md", "SHA256SUMS", "wids-index.json"])


def test_manifests_keep_one_row_per_candidate(published_run: Path) -> None:
    layout = RunLayout(published_run)
    kept, reasons = 0, []
    for shard, samples in SHARDS.items():
        table = pq.read_table(layout.manifest("shard", shard))
        assert table.schema == S.schema_for(SHARD_COLUMNS)
        assert table[S.SAMPLE_ID].to_pylist() == [s.sample_id for s in samples]
        kept += sum(table[S.KEEP].to_pylist())
        reasons += table[S.REJECT_REASON].to_pylist()
        report = read_done(layout, "shard", shard)
        assert report is not None and report.balanced()
    assert kept == N_PUBLISHED
    assert sorted(r for r in reasons if r) == [
        "candidates:invalid_url",
        "caption:refused",
        "dedup:near",
        "download:http_404",
        "face_count:zero",
        "shard:missing_image",
    ]
    report1 = read_done(layout, "shard", 1)
    assert report1 is not None
    assert (report1.n_in, report1.n_out, report1.dropped) == (4, 3, {"shard:missing_image": 1})


def test_tars_hold_sorted_samples_with_fixed_headers(published_run: Path) -> None:
    keys = []
    for name in TARS:
        with tarfile.open(published_run / OUT / name) as tar:
            for info in tar.getmembers():
                assert (info.mtime, info.uid, info.gid, info.mode) == (0, 0, 0, 0o444)
                assert (info.uname, info.gname) == ("", "")
                assert "/" not in info.name and ".." not in info.name
            keys += [n.split(".")[0] for n in tar.getnames() if n.endswith(".txt")]
    shard0 = sorted([sid("a0"), sid("a1"), member_key(HOSTILE_ID)])
    # order: input shard, then sample_id (the hostile id sorts first: '.' < digits)
    assert keys[:3] == [member_key(HOSTILE_ID), *sorted([sid("a0"), sid("a1")])]
    assert sorted(keys[:3]) == shard0
    assert keys[3:] == sorted([sid("b0"), sid("b1"), sid("b2")])
    assert [len(_tar_names(published_run / OUT / t)) for t in TARS] == [6, 6, 6]


def test_hostile_key_is_sanitized() -> None:
    key = member_key(HOSTILE_ID)
    assert "/" not in key and "." not in key
    assert key.startswith("etc_passwd_x___jpg_") and len(key) == len("etc_passwd_x___jpg_") + 8
    assert member_key("__") == hashlib.sha1(b"__").hexdigest()[:8]
    assert member_key(sid("a0")) == sid("a0")
    assert member_key("a/b") != member_key("a_b")


def test_json_member_and_index(published_run: Path) -> None:
    out = published_run / OUT
    with tarfile.open(out / "00000.tar") as tar:
        key = member_key(HOSTILE_ID)
        meta = json.loads(tar.extractfile(f"{key}.json").read())  # type: ignore[union-attr]
        caption = tar.extractfile(f"{key}.txt").read().decode()  # type: ignore[union-attr]
        offsets = {m.name: m.offset for m in tar.getmembers()}
    assert meta["sample_id"] == HOSTILE_ID
    assert meta["caption_model"] == "attributes" and meta["caption_prompt_version"] == "v1"
    assert meta["faces"][0]["box_xyxy_px"] == [100.0, 120.0, 300.0, 340.0]
    assert len(meta["faces"][0]["landmarks_px"]) == 5
    assert meta["scores"][S.FACE_SHARPNESS] == 74.0
    assert caption == "A photo of astronaut crop, close-up."
    index = pq.read_table(out / "00000.parquet").to_pylist()
    assert [r[S.OUT_INDEX] for r in index] == [0, 1]
    assert index[0][S.SAMPLE_ID] == HOSTILE_ID
    assert index[0][S.OUT_MEMBERS] == [f"{key}.jpg", f"{key}.json", f"{key}.txt"]
    assert index[0][S.OUT_OFFSET_BYTES] == offsets[f"{key}.jpg"] == 0
    second = index[1]
    assert second[S.OUT_OFFSET_BYTES] == offsets[second[S.OUT_MEMBERS][0]]
    assert second[S.OUT_OFFSET_BYTES] == index[0][S.OUT_SIZE_BYTES]


def test_wids_index_and_checksums(published_run: Path) -> None:
    out = published_run / OUT
    wids = json.loads((out / "wids-index.json").read_text())
    assert wids["wids_version"] == 1
    assert [s["url"] for s in wids["shardlist"]] == TARS
    assert [s["nsamples"] for s in wids["shardlist"]] == [2, 2, 2]
    for entry in wids["shardlist"]:
        data = (out / entry["url"]).read_bytes()
        assert entry["filesize"] == len(data)
        assert entry["md5sum"] == hashlib.md5(data).hexdigest()
    lines = (out / "SHA256SUMS").read_text().splitlines()
    assert len(lines) == 6
    for line in lines:
        digest, name = line.split("  ")
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest


def test_rerun_is_byte_identical(published_run: Path, tmp_path: Path, local_client: object) -> None:
    build_run(tmp_path / "again")
    publish(tmp_path / "again", local_client)
    for name in [*TARS, "00000.parquet", "wids-index.json", "SHA256SUMS", "README.md"]:
        assert (tmp_path / "again" / OUT / name).read_bytes() == (
            published_run / OUT / name
        ).read_bytes(), name


def test_prepare_skips_a_published_run(run_copy: Path, local_client: object) -> None:
    before = (run_copy / OUT / "00000.tar").stat().st_mtime_ns
    publish(run_copy, local_client)
    assert (run_copy / OUT / "00000.tar").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("config", "sizes"),
    [
        (ShardConfig(samples_per_shard=4), [4, 2]),
        (ShardConfig(samples_per_shard=100, max_shard_bytes=1), [1] * 6),
        (ShardConfig(reencode=True, max_side_px=64, jpeg_quality=80), [6]),
    ],
)
def test_cut_limits_and_reencode(
    config: ShardConfig, sizes: list[int], tmp_path: Path, local_client: object
) -> None:
    build_run(tmp_path / "run")
    publish(tmp_path / "run", local_client, config)
    wids = json.loads((tmp_path / "run" / OUT / "wids-index.json").read_text())
    assert [s["nsamples"] for s in wids["shardlist"]] == sizes
    if config.reencode:
        from PIL import Image

        with tarfile.open(tmp_path / "run" / OUT / "00000.tar") as tar:
            first = tar.getmembers()[0]
            image = Image.open(tar.extractfile(first))  # type: ignore[arg-type]
            meta = json.loads(tar.extractfile(tar.getmembers()[1]).read())  # type: ignore[union-attr]
        assert max(image.size) == 64 and image.size == (meta["width_px"], meta["height_px"])
        # the first sample is astronaut_crop (384 px square): boxes scale by 64/384
        assert meta["faces"][0]["box_xyxy_px"] == [16.666667, 20.0, 50.0, 56.666667]
