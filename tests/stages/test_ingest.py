"""Streaming ingest of the candidates stage: batches, row-group tasks, buckets, resumption."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests import schema as S
from manifests.fingerprint import split_config
from manifests.layout import RunLayout
from stages.candidates import CandidatesConfig
from stages.candidates_ingest import ReadTask, plan_read_tasks, shards_per_bucket
from stages.laion_input import InputError, InputFile
from stages.plan import read_plan
from stages.urls import UrlProblem, _normalize_general, normalize_url, sample_id_for
from tests.conftest import LAION_10K
from tests.stages.candidates_helpers import run_candidates

SMALL = {"ingest_batch_rows": 37, "ingest_task_rows": 300, "ingest_bucket_rows": 100}


def laion_file(path: Path, urls: list[str | None], first_id: int, row_group: int) -> Path:
    """A LAION-400M-shaped file with ``row_group`` rows per row group."""
    n = len(urls)
    table = pa.table(
        {
            "SAMPLE_ID": pa.array(range(first_id, first_id + n), pa.int64()),
            "URL": urls,
            "TEXT": [f"a photo of person {i}" for i in range(n)],
            "HEIGHT": [512] * n,
            "WIDTH": [640] * n,
            "LICENSE": ["?"] * n,
            "NSFW": ["UNLIKELY"] * n,
            "similarity": [0.31] * n,
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group)
    return path


def two_inputs(tmp: Path) -> list[str]:
    """a.parquet: 1000 rows in 3 row groups (a repeated URL, bad URLs); b.parquet: 500 rows
    in one row group, whose row 10 repeats a.parquet's row 7."""
    a_urls: list[str | None] = [f"https://a.example/img/{i}.jpg" for i in range(1000)]
    a_urls[500] = a_urls[3]
    a_urls[600], a_urls[601] = None, "not a url"
    b_urls: list[str | None] = [f"https://b.example/p/{i}.jpg" for i in range(500)]
    b_urls[10] = "https://A.example:443/img/7.jpg"
    a = laion_file(tmp / "in" / "a.parquet", a_urls, 0, 400)
    b = laion_file(tmp / "in" / "b.parquet", b_urls, 5000, 500)
    return [str(a), str(b)]


def test_plan_read_tasks_cuts_files_by_row_groups() -> None:
    files = [InputFile("a", 1000, (400, 400, 200)), InputFile("b", 500, (500,))]
    assert plan_read_tasks(files, 300) == [
        ReadTask(0, "a", (0,), 0),
        ReadTask(1, "a", (1,), 400),
        ReadTask(2, "a", (2,), 800),
        ReadTask(3, "b", (0,), 0),
    ]
    assert plan_read_tasks(files, 800) == [
        ReadTask(0, "a", (0, 1), 0),
        ReadTask(1, "a", (2,), 800),
        ReadTask(2, "b", (0,), 0),
    ]
    assert plan_read_tasks([InputFile("empty", 0, ())], 10) == [ReadTask(0, "empty", (), 0)]
    assert shards_per_bucket(30, 1500, 100) == 2  # 15 buckets of 2 shards, 100 rows each
    assert shards_per_bucket(4, 40, 1_000_000) == 4  # one bucket


def test_small_batches_tasks_and_buckets_give_identical_manifests(
    tmp_path: Path, dask_address: str
) -> None:
    inputs = two_inputs(tmp_path)
    whole = run_candidates(
        tmp_path / "whole", dask_address, input=inputs, shard_size=50, resolve_hosts=False
    )
    streamed = run_candidates(
        tmp_path / "streamed",
        dask_address,
        input=inputs,
        shard_size=50,
        resolve_hosts=False,
        **SMALL,
    )
    assert streamed.equals(whole)
    assert streamed.num_rows == 1500
    assert sorted(set(streamed[S.SHARD].to_pylist())) == list(range(30))
    rows = streamed.to_pylist()
    # Within a shard, rows are in input order: file, then row.
    for shard in range(30):
        mine = [(r[S.SOURCE_FILE], r[S.SOURCE_ROW]) for r in rows if r[S.SHARD] == shard]
        assert mine == sorted(mine)
    got = {(Path(r[S.SOURCE_FILE]).name, r[S.SOURCE_ROW]): r for r in rows}
    first, again = got[("a.parquet", 3)], got[("a.parquet", 500)]
    assert first[S.SAMPLE_ID] == sample_id_for("https://a.example/img/3.jpg")
    assert (again[S.DUPLICATE_OF], again[S.REJECT_REASON]) == (
        first[S.SAMPLE_ID],
        "candidates:duplicate_url",
    )
    across = got[("b.parquet", 10)]
    assert across[S.DUPLICATE_OF] == got[("a.parquet", 7)][S.SAMPLE_ID]
    assert got[("a.parquet", 600)][S.REJECT_REASON] == "candidates:missing_url"
    assert got[("a.parquet", 601)][S.REJECT_REASON] == "candidates:invalid_url"
    assert got[("b.parquet", 499)][S.SOURCE_SAMPLE_ID] == "5499"
    assert got[("b.parquet", 499)][S.SHARD] == shard_of("https://b.example/p/499.jpg", 30)


def test_intermediate_files_follow_the_inputs_and_the_done_run_is_not_reingested(
    tmp_path: Path, dask_address: str
) -> None:
    inputs = two_inputs(tmp_path)
    section = {"input": inputs, "shard_size": 50, "resolve_hosts": False, **SMALL}
    run_candidates(tmp_path, dask_address, **section)
    run_dir = tmp_path / "run"
    global_dir = run_dir / "candidates" / "_global"
    key = read_plan_key(run_dir)
    rows = sorted((global_dir / f"ingest-{key}" / "rows").glob("*.parquet"))
    assert [p.stem for p in rows] == [f"{s:05d}" for s in range(30)]
    assert not list((global_dir / f"ingest-{key}").glob("pass1-*"))  # removed when done
    stamps = {p: p.stat().st_mtime_ns for p in [*rows, global_dir / "ingest.json"]}

    # Same inputs, another speed knob: the same key, nothing is read again.
    run_candidates(tmp_path, dask_address, **{**section, "ingest_batch_rows": 1000})
    assert read_plan_key(run_dir) == key
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # keep_columns changes the rows: a new key, the old files are removed.
    table = run_candidates(tmp_path, dask_address, **{**section, "keep_columns": ["LICENSE"]})
    new_key = read_plan_key(run_dir)
    assert new_key != key
    assert sorted(p.name for p in global_dir.glob("ingest-*")) == [f"ingest-{new_key}"]
    assert table.num_rows == 1500
    assert set(table["LICENSE"].to_pylist()) == {"?"}

    # Another shard_size changes what a shard is: refused in the same run dir.
    with pytest.raises(InputError, match="planned with other inputs, shard_size"):
        run_candidates(tmp_path, dask_address, **{**section, "shard_size": 10})


def test_an_interrupted_ingest_resumes_from_what_is_done(tmp_path: Path, dask_address: str) -> None:
    section = {"input": two_inputs(tmp_path), "shard_size": 50, "resolve_hosts": False, **SMALL}
    run_candidates(tmp_path, dask_address, **section)
    run_dir = tmp_path / "run"
    root = run_dir / "candidates" / "_global" / f"ingest-{read_plan_key(run_dir)}"
    before = {p.name: pq.read_table(p) for p in sorted((root / "rows").glob("*.parquet"))}
    # As if the driver died during pass 2: no ingest.json, some shards' rows missing, and
    # a pass-1 directory of another layout (other speed knobs) left behind.
    (run_dir / "candidates" / "_global" / "ingest.json").unlink()
    for name in ("00000.parquet", "00007.parquet", "00029.parquet"):
        (root / "rows" / name).unlink()
    (root / "pass1-0123456789abcdef" / "t00000").mkdir(parents=True)
    stamp = {
        name: (root / "rows" / name).stat().st_mtime_ns
        for name in ("00001.parquet", "00002.parquet")
    }
    run_candidates(tmp_path, dask_address, **section)
    after = {p.name: pq.read_table(p) for p in sorted((root / "rows").glob("*.parquet"))}
    assert after.keys() == before.keys()
    assert all(after[name].equals(before[name]) for name in before)
    assert [p.name for p in root.iterdir()] == ["rows"]
    # Buckets hold 2 shards: bucket 0 (shards 0, 1) was rewritten, complete bucket 1 was not.
    assert (root / "rows" / "00001.parquet").stat().st_mtime_ns != stamp["00001.parquet"]
    assert (root / "rows" / "00002.parquet").stat().st_mtime_ns == stamp["00002.parquet"]


def shard_of(url: str, n_shards: int) -> int:
    return int(hashlib.sha1(url.encode()).hexdigest()[:15], 16) % n_shards


def test_empty_shards_get_empty_manifests(tmp_path: Path, dask_address: str) -> None:
    candidates = (f"https://c.example/{i}.jpg" for i in range(1000))
    urls: list[str | None] = [u for u in candidates if shard_of(u, 3) == 0][:3]
    src = laion_file(tmp_path / "in" / "c.parquet", urls, 0, 2)
    run_candidates(
        tmp_path, dask_address, input=[str(src)], shard_size=1, resolve_hosts=False, **SMALL
    )
    manifests = [tmp_path / "run" / "candidates" / f"{s:05d}.parquet" for s in range(3)]
    assert [pq.read_metadata(p).num_rows for p in manifests] == [3, 0, 0]
    empty = pq.read_table(manifests[2])
    assert empty.schema.names == list(S.CANDIDATES_COLUMNS)


TRICKY_URLS = [
    "https://Example.COM/a.jpg",
    "https://example.com./a.jpg",
    "https://example.com/a.jpg?",
    "https://example.com?x=1",
    "https://example.com",
    "https://example.com:443/a.jpg",
    "http://example.com:8080/a.jpg",
    "https://example.com/a.jpg#frag",
    "https://example.com/a b.jpg",
    "https://example.com/caf%C3%A9.jpg?q=%20&r=a?b",
    "https://example.com/\u00e9t\u00e9.jpg",
    "https://xn--caf-dma.example/a.jpg",
    "https://" + "a" * 64 + ".example/a.jpg",
    "https://a..b.example/a.jpg",
    "https://127.0.0.1/a.jpg",
    "http://[::1]/a.jpg",
    "https://user@example.com/a.jpg",
    "https://exa\tmple.com/a.jpg",
    "HTTPS://example.com/a.jpg",
    "  https://example.com/padded.jpg  ",
    "https://.../a.jpg",
    "https://example.com//double//slash",
    "https://example.com/a.jpg?x=[1]",
]


def _outcome(raw: str) -> object:
    try:
        return normalize_url(raw)
    except UrlProblem as problem:
        return problem.why


def _general(raw: str) -> object:
    try:
        return _normalize_general(raw.strip())
    except UrlProblem as problem:
        return problem.why


def test_the_canonical_url_shortcut_agrees_with_the_general_path() -> None:
    urls = list(TRICKY_URLS)
    if LAION_10K.is_file():
        urls += [u for u in pq.read_table(LAION_10K)["URL"].to_pylist() if u and u.strip()]
    assert [_outcome(u) for u in urls] == [_general(u) for u in urls]


def test_ingest_knobs_are_operational() -> None:
    config = CandidatesConfig(input=[], **SMALL)  # type: ignore[arg-type]
    produce = split_config(config).produce
    assert not set(SMALL) & set(produce)
    assert {"input", "include", "column_map", "keep_columns", "shard_size"} <= set(produce)


def read_plan_key(run_dir: Path) -> str:
    return read_plan(RunLayout(run_dir)).ingest
