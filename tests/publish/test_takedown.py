"""Takedown: listed samples leave every output; other tars keep their bytes."""

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
from pipeline.status import RunDirError
from pipeline.takedown import apply_takedown
from stages.shard.records import member_key
from tests.publish.synthetic import HOSTILE_ID, SHARDS, build_run, sid, url_of


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _published_ids(out: Path) -> list[str]:
    ids = []
    for index in sorted(out.glob("*.parquet")):
        ids += pq.read_table(index)[S.SAMPLE_ID].to_pylist()
    return ids


def _tar_keys(out: Path) -> set[str]:
    keys = set()
    for path in out.glob("*.tar"):
        with tarfile.open(path) as tar:
            keys |= {n.split(".")[0] for n in tar.getnames()}
    return keys


def test_takedown_by_url_hash_and_id(run_copy: Path, tmp_path: Path) -> None:
    out = run_copy / "shards"
    before = {p.name: _sha(p) for p in out.glob("*.tar")}
    b1 = SHARDS[1][1]
    listing = tmp_path / "takedown.txt"
    listing.write_text(
        f"# requests\n{url_of(b1).replace('img.example.org', 'IMG.Example.ORG')}\n"
        f"{hashlib.sha256(url_of(SHARDS[0][0]).encode()).hexdigest()}\n"
        f"{sid('a5')}\n"
    )
    result = apply_takedown(run_copy, listing)
    # a0 (tar 0, by sha256 of its URL), b1 (tar 2, by URL), a5 (never published: filtered)
    assert result.listed == tuple(sorted([sid("a0"), sid("b1"), sid("a5")]))
    assert result.removed == tuple(sorted([sid("a0"), sid("b1")]))
    assert result.rebuilt == ("00000.tar", "00002.tar") and result.deleted == ()
    assert result.untouched == 1
    assert _sha(out / "00001.tar") == before["00001.tar"]
    assert _sha(out / "00000.tar") != before["00000.tar"]
    gone = {sid("a0"), sid("b1")}
    assert gone.isdisjoint(_published_ids(out)) and gone.isdisjoint(_tar_keys(out))
    assert len(_published_ids(out)) == 4
    wids = json.loads((out / "wids-index.json").read_text())
    assert [s["nsamples"] for s in wids["shardlist"]] == [1, 2, 1]
    for entry in wids["shardlist"]:
        assert entry["md5sum"] == hashlib.md5((out / entry["url"]).read_bytes()).hexdigest()
    sums = dict(
        reversed(line.split("  ")) for line in (out / "SHA256SUMS").read_text().splitlines()
    )
    assert all(sums[p.name] == _sha(p) for p in out.iterdir() if p.suffix in (".tar", ".parquet"))
    assert "takedown requests honoured: 3 samples" in (out / "README.md").read_text()
    # All three were kept by candidates: the takedown rejects them there (first reason).
    assert "| `takedown:requested` | 3 |" in (out / "README.md").read_text()
    assert "| candidates | 12 | 8 | 4 |" in (out / "README.md").read_text()


def test_takedown_marks_manifests_and_indexes(run_copy: Path, tmp_path: Path) -> None:
    # tars: 0 = [hostile, a0], 1 = [a1, b2], 2 = [b0, b1] (input shard, then sample_id)
    listing = tmp_path / "ids.txt"
    listing.write_text(f"{sid('b0')}\n")
    apply_takedown(run_copy, listing)
    layout = RunLayout(run_copy)
    rows = {r[S.SAMPLE_ID]: r for r in pq.read_table(layout.manifest("shard", 1)).to_pylist()}
    assert rows[sid("b0")][S.TAKEDOWN] is True and rows[sid("b0")][S.KEEP] is False
    assert rows[sid("b0")][S.REJECT_REASON] == "takedown:requested"
    assert rows[sid("b0")][S.OUT_TAR] is None
    # b1 moved up inside tar 2: the manifest, the index and the tar agree
    assert (rows[sid("b1")][S.OUT_TAR], rows[sid("b1")][S.OUT_INDEX]) == ("00002.tar", 0)
    index = pq.read_table(run_copy / "shards" / "00002.parquet").to_pylist()
    assert [r[S.SAMPLE_ID] for r in index] == [sid("b1")]
    assert _tar_keys(run_copy / "shards") >= {sid("b1")}
    # b0 now arrives rejected (the takedown retracted it upstream), so candidates counts it.
    report = read_done(layout, "shard", 1)
    assert report is not None and report.dropped == {"shard:missing_image": 1}
    assert (report.n_in, report.n_out) == (3, 2)
    candidates = read_done(layout, "candidates", 1)
    assert candidates is not None and candidates.dropped == {"takedown:requested": 1}


def test_takedown_deletes_an_emptied_tar_and_is_idempotent(run_copy: Path, tmp_path: Path) -> None:
    out = run_copy / "shards"
    listing = tmp_path / "two.txt"
    listing.write_text(f"{sid('b0')}\n{url_of(SHARDS[1][2])}\n")  # tars 1 and 2
    first = apply_takedown(run_copy, listing)
    assert first.removed == tuple(sorted([sid("b0"), sid("b2")]))
    assert first.rebuilt == ("00001.tar", "00002.tar")
    listing2 = tmp_path / "hostile.txt"
    listing2.write_text(f"{HOSTILE_ID}\n{sid('a0')}\n")
    second = apply_takedown(run_copy, listing2)
    assert second.deleted == ("00000.tar",)
    assert not (out / "00000.tar").exists() and not (out / "00000.parquet").exists()
    assert member_key(HOSTILE_ID) not in _tar_keys(out)
    wids = json.loads((out / "wids-index.json").read_text())
    assert [s["url"] for s in wids["shardlist"]] == ["00001.tar", "00002.tar"]
    hashes = {p.name: _sha(p) for p in out.iterdir()}
    again = apply_takedown(run_copy, listing2)
    assert again.removed == () and again.rebuilt == () and again.untouched == 2
    assert {p.name: _sha(p) for p in out.iterdir()} == hashes


def test_takedown_needs_a_published_run(tmp_path: Path) -> None:
    build_run(tmp_path / "run")
    listing = tmp_path / "l.txt"
    listing.write_text("x\n")
    with pytest.raises(RunDirError, match="nothing published"):
        apply_takedown(tmp_path / "run", listing)
