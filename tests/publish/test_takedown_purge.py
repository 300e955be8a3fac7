"""Takedown everywhere: no byte of a listed sample stays in any tar, cache or report of the run,
every other member keeps its exact bytes, and the takedown says where it removed each sample."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from manifests import schema as S
from manifests.io import read_done
from manifests.layout import RunLayout
from pipeline.report_html import write_report
from pipeline.takedown import apply_takedown
from pipeline.takedown_audit import thumbnails_in
from stages.download_tar import remove_samples, sample_key
from stages.shard.records import member_key
from stages.shard.takedown_list import read_takedown_register
from tests.publish.synthetic import sid

Members = list[tuple[str, bytes]]  # (member name, its raw header and data blocks), in order


def _raw_members(path: Path) -> Members:
    """Every member with the exact bytes it occupies in the tar (headers included)."""
    data = path.read_bytes()
    with tarfile.open(path) as tar:
        out = []
        for info in tar.getmembers():
            end = info.offset_data + -(-info.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            out.append((info.name, data[info.offset : end]))
    return out


def _all_tars(run: Path) -> dict[str, Members]:
    return {p.relative_to(run).as_posix(): _raw_members(p) for p in sorted(run.rglob("*.tar"))}


def _keys_of(run: Path, ids: set[str]) -> set[str]:
    """Every tar member key a sample can have: its dl_key (download) and its published key."""
    keys = {member_key(i) for i in ids}
    for path in sorted((run / "download").glob("*.parquet")):
        table = pq.read_table(path, columns=[S.SAMPLE_ID, S.DL_KEY]).to_pylist()
        keys |= {r[S.DL_KEY] for r in table if r[S.SAMPLE_ID] in ids and r[S.DL_KEY]}
    return keys


def _add_scratch(run: Path, member: str) -> None:
    """What a killed run leaves: a partial img2dataset tar, a half-written published tar."""
    scratch = run / "download" / "_tmp" / "00000" / "out"
    scratch.mkdir(parents=True)
    with tarfile.open(scratch / "00000.tar", "w") as tar:
        info = tarfile.TarInfo(member)
        info.size = 3
        tar.addfile(info, io.BytesIO(b"img"))
    (run / "shards" / ".00000.tar.deadbeef.tmp").write_bytes(b"partial")


# a0: published (tar 0); b2: published (tar 1); a5: filtered (face_count:zero), bytes in its
# download tar; a4: download failed (no bytes); a3: rejected by candidates (never anything).
LISTED = {sid("a0"), sid("b2"), sid("a5"), sid("a4"), sid("a3")}


def test_takedown_removes_every_copy_and_lists_each_place(run_copy: Path, tmp_path: Path) -> None:
    write_report(run_copy)  # the audit report shows thumbnails of a0, b2 and a5
    assert thumbnails_in((run_copy / "audit.html").read_text()) >= {sid("a0"), sid("a5")}
    _add_scratch(run_copy, "000000000.jpg")  # a0's dl_key
    listed_keys = _keys_of(run_copy, LISTED)
    before = _all_tars(run_copy)
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{i}\n" for i in sorted(LISTED)))

    result = apply_takedown(run_copy, listing)

    assert result.places == {
        sid("a0"): (
            "audit.html", "caption/00000.parquet", "download/00000.tar", "filter/00000.parquet",
            "shard/_global/parts/00000.parquet", "shards/00000.parquet", "shards/00000.tar",
        ),
        sid("b2"): (
            "audit.html", "caption/00001.parquet", "download/00001.tar", "filter/00001.parquet",
            "shard/_global/parts/00001.parquet", "shards/00001.parquet", "shards/00001.tar",
        ),
        sid("a5"): (
            "audit.html", "caption/00000.parquet", "download/00000.tar", "filter/00000.parquet",
        ),
        sid("a4"): ("filter/00000.parquet",),  # the synthetic run scored it all the same
        sid("a3"): (),
    }  # fmt: skip
    assert result.scratch == ("download/_tmp/00000", "shards/.00000.tar.deadbeef.tmp")
    record = json.loads(result.record.read_text())
    assert record["places"] == {k: list(v) for k, v in result.places.items()}
    assert record["scratch"] == list(result.scratch) and record["listed"] == sorted(LISTED)
    assert result.record.parent == run_copy / "takedowns"

    after = _all_tars(run_copy)
    assert sorted(after) == [
        "download/00000.tar", "download/00001.tar",
        "shards/00000.tar", "shards/00001.tar", "shards/00002.tar",
    ]  # fmt: skip
    for name, members in after.items():
        # Nothing of a listed sample, not even its sample_id inside another member...
        assert not {sample_key(m) for m, _ in members} & listed_keys, name
        blob = (run_copy / name).read_bytes()
        assert not [i for i in LISTED if i.encode() in blob], name
        # ...and every other member exactly as it was, in the same order.
        assert members == [(m, b) for m, b in before[name] if sample_key(m) not in listed_keys]
    assert len(after["download/00000.tar"]) == 4 and len(after["download/00001.tar"]) == 8
    assert not thumbnails_in((run_copy / "audit.html").read_text()) & LISTED


def test_takedown_retracts_the_rows_and_recounts_the_reports(
    run_copy: Path, tmp_path: Path
) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{i}\n" for i in sorted(LISTED)))
    apply_takedown(run_copy, listing)
    layout = RunLayout(run_copy)
    rows = {r[S.SAMPLE_ID]: r for r in pq.read_table(layout.manifest("download", 0)).to_pylist()}
    assert len(rows) == 6
    got = {i: (rows[i][S.KEEP], rows[i][S.REJECT_REASON], rows[i][S.DL_KEY], rows[i][S.DL_STATUS])
           for i in LISTED if i in rows}  # fmt: skip
    assert got == {
        sid("a0"): (False, "takedown:requested", None, "taken_down"),
        sid("a5"): (False, "takedown:requested", None, "taken_down"),
        sid("a4"): (False, "takedown:requested", None, "failed_to_download"),
        sid("a3"): (False, "candidates:invalid_url", None, "failed_to_download"),
    }
    assert rows[sid("a0")][S.DL_SHA256] == hashlib.sha256(sid("a0").encode()).hexdigest()
    filt = {r[S.SAMPLE_ID]: r for r in pq.read_table(layout.manifest("filter", 0)).to_pylist()}
    assert filt[sid("a5")][S.FACE_COUNT] is None and filt[sid("a5")][S.FACE_BOXES] is None
    assert filt[sid("a1")][S.FACE_COUNT] == 1  # others keep their scores
    cap = {r[S.SAMPLE_ID]: r for r in pq.read_table(layout.manifest("caption", 0)).to_pylist()}
    assert cap[sid("a0")][S.CAPTION] is None
    assert cap[sid("a0")][S.REJECT_REASON] == "takedown:requested"
    reports = {s: read_done(layout, s, 0) for s in ("candidates", "download", "filter")}
    counts = {s: (r.n_in, r.n_out, r.dropped) for s, r in reports.items() if r is not None}
    assert counts == {
        "candidates": (6, 2, {"candidates:invalid_url": 1, "takedown:requested": 3}),
        "download": (2, 2, {}),
        "filter": (2, 2, {}),
    }
    assert read_takedown_register(layout) == frozenset(LISTED)


def test_a_second_takedown_changes_nothing(run_copy: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"{sid('a0')}\n{sid('b1')}\n")
    apply_takedown(run_copy, listing)

    def files() -> dict[str, str]:
        return {
            p.relative_to(run_copy).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_copy.rglob("*"))
            if p.is_file() and p.parent.name != "takedowns"
        }

    state = files()
    again = apply_takedown(run_copy, listing)
    assert again.places == {sid("a0"): (), sid("b1"): ()} and again.removed == ()
    assert files() == state
    assert len(list((run_copy / "takedowns").glob("2*.json"))) == 2


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_remove_samples_copies_the_other_members_block_for_block(fmt: int, tmp_path: Path) -> None:
    path = tmp_path / "mixed.tar"
    long_key = "d" * 120 + "/k2"  # a GNU long-name or a pax header precedes its members
    pax = {"comment": "global"} if fmt == tarfile.PAX_FORMAT else {}
    with tarfile.open(path, "w", format=fmt, pax_headers=pax) as tar:
        for name, data in [
            ("k1.jpg", b"one"), ("k1.json", b"{}"), (f"{long_key}.jpg", b"two" * 300),
            ("caf\u00e9.txt", b"four"), ("k3.jpg", b"three"),
        ]:  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    before = _raw_members(path)
    assert remove_samples(path, {"nothing"}) == frozenset()
    assert _raw_members(path) == before
    assert remove_samples(path, {"k1", long_key, "absent"}) == {"k1", long_key}
    assert _raw_members(path) == [m for m in before if m[0] in ("caf\u00e9.txt", "k3.jpg")]
    with tarfile.open(path) as tar:
        assert tar.pax_headers == pax  # a global header is no member's: it stays
        data = [tar.extractfile(m).read() for m in tar.getmembers()]  # type: ignore[union-attr]
    assert data == [b"four", b"three"]
    assert path.stat().st_size % tarfile.RECORDSIZE == 0
    assert [p.name for p in tmp_path.iterdir()] == ["mixed.tar"]  # no temp file left


def test_a_register_left_where_older_runs_kept_it_still_counts(run_copy: Path) -> None:
    layout = RunLayout(run_copy)
    legacy = run_copy / "shard" / "_global" / "takedown.json"
    legacy.write_text(json.dumps({"sample_ids": [sid("a1")]}))
    assert read_takedown_register(layout) == {sid("a1")}
    assert not layout.takedown_register.exists()
