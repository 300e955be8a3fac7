"""Include lists: only listed rows enter the run; the others are counted, never written."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from manifests import schema as S
from manifests.layout import RunLayout
from pipeline.config import ConfigError, validate_config
from stages.include_list import IncludeListError, compile_include, open_include
from stages.plan import read_plan
from stages.urls import sample_id_for
from tests.stages.candidates_helpers import read_candidates, run_candidates_result
from tests.stages.test_ingest import laion_file

N_ROWS = 200  # SAMPLE_IDs 1000..1199, URLs https://f.example/<i>.jpg


def url(i: int) -> str:
    return f"https://f.example/{i}.jpg"


@pytest.fixture()
def laion_input(tmp_path: Path) -> str:
    urls: list[str | None] = [url(i) for i in range(N_ROWS)]
    return str(laion_file(tmp_path / "in" / "part-00000.parquet", urls, 1000, 64))


def run_with(tmp: Path, address: str, source: str, include: list[Path]) -> tuple[pa.Table, dict]:
    """Candidates manifests and the merged report's counters of a run with ``include``."""
    result = run_candidates_result(
        tmp,
        address,
        input=[source],
        include=[str(p) for p in include],
        shard_size=10,
        resolve_hosts=False,
        ingest_batch_rows=50,
        ingest_task_rows=100,
        ingest_bucket_rows=20,
    )
    report = result.reports["candidates"]
    assert report.balanced()
    return read_candidates(tmp / "run"), report.counters


def source_ids(table: pa.Table) -> list[int]:
    return sorted(int(v) for v in table[S.SOURCE_SAMPLE_ID].to_pylist())


class Evil:
    """A pickle that would run a command when loaded without weights_only."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo should-never-run",))


@pytest.mark.parametrize("form", ["tensor", "list", "per_part"])
def test_laion_face_pth_selects_exactly_the_listed_ids(
    tmp_path: Path, dask_address: str, laion_input: str, form: str
) -> None:
    listed = [1003, 1010, 1077, 1199, 999_999]  # the last one is not in the input
    path = tmp_path / "laion_face_ids.pth"
    saved = {
        "tensor": torch.tensor(listed),
        "list": listed,
        "per_part": {0: listed[:2], 1: torch.tensor(listed[2:])},
    }[form]
    torch.save(saved, path)
    table, counters = run_with(tmp_path, dask_address, laion_input, [path])
    assert source_ids(table) == [1003, 1010, 1077, 1199]
    assert table[S.REJECT_REASON].to_pylist() == [None] * 4
    assert counters["excluded_by_include"] == N_ROWS - 4
    layout = RunLayout(tmp_path / "run")
    assert read_plan(layout).n_shards == 1  # ceil(min(200 rows, 5 ids) / 10)
    summary = json.loads((layout.stage_global("candidates") / "ingest.json").read_text())
    assert (summary["rows_read"], summary["rows_in"], summary["excluded_by_include"]) == (
        200,
        4,
        196,
    )


def test_parquet_and_txt_lists_by_sample_id_and_url_hash(
    tmp_path: Path, dask_address: str, laion_input: str
) -> None:
    ints = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"SAMPLE_ID": pa.array([1001, 1002, 1150], pa.int64())}), ints)
    hashes = tmp_path / "hashes.parquet"
    sha1 = [hashlib.sha1(url(i).encode()).hexdigest() for i in (20, 21)]
    pq.write_table(pa.table({"url_sha1": sha1, "other": ["x", "y"]}), hashes)
    text = tmp_path / "ids.txt"
    text.write_text(f"# LAION-Face subset\n\n1160\n{sample_id_for(url(30))}\n  1161  \n")
    table, counters = run_with(tmp_path, dask_address, laion_input, [ints, hashes, text])
    assert source_ids(table) == [1001, 1002, 1020, 1021, 1030, 1150, 1160, 1161]
    assert sorted(table[S.SAMPLE_ID].to_pylist()) == sorted(
        sample_id_for(url(i)) for i in (1, 2, 20, 21, 30, 150, 160, 161)
    )
    assert counters["excluded_by_include"] == N_ROWS - 8
    assert read_plan(RunLayout(tmp_path / "run")).n_shards == 1  # 8 ids listed


def test_string_sample_ids_match_as_text(tmp_path: Path) -> None:
    text = tmp_path / "ids.txt"
    text.write_text("h0\nh7\n42\n")
    out = tmp_path / "compiled"
    assert compile_include([str(text)], str(out)) == 3
    ids = open_include(str(out))
    source = pa.array(["h7", "42", "042", "h1", None, "43"], pa.string())
    assert ids.match_source(source).tolist() == [True, True, True, False, False, False]
    assert ids.match_hashes([None, "ab" * 20]).tolist() == [False, False]
    assert np.asarray(ids.sample_ids).tolist() == [42]


def test_a_pickle_that_needs_objects_is_refused(tmp_path: Path, dask_address: str) -> None:
    path = tmp_path / "laion_face_ids.pth"
    torch.save([1, 2, Evil()], path)
    with pytest.raises(IncludeListError) as err:
        compile_include([str(path)], str(tmp_path / "out"))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"candidates.include: {path} was refused: loading it would")
    assert "the global posix.system" in message
    source = laion_file(tmp_path / "in" / "p.parquet", [url(0)], 0, 1)
    with pytest.raises(IncludeListError, match="was refused"):
        run_with(tmp_path, dask_address, str(source), [path])
    assert not (tmp_path / "run" / "candidates" / "00000.parquet").exists()


def test_unsupported_contents_are_one_line_errors(tmp_path: Path) -> None:
    two_d = tmp_path / "two_d.pth"
    torch.save(torch.tensor([[1, 2], [3, 4]]), two_d)
    floats = tmp_path / "floats.pth"
    torch.save({"scores": 0.5}, floats)
    cases = {
        two_d: "holds a 2-D torch.int64 tensor",
        floats: "holds a dict of float",
    }
    for path, found in cases.items():
        with pytest.raises(IncludeListError, match=found):
            compile_include([str(path)], str(tmp_path / path.stem))
    table = tmp_path / "cols.parquet"
    pq.write_table(pa.table({"a": [1], "b": [2]}), table)
    with pytest.raises(IncludeListError, match="has columns"):
        compile_include([str(table)], str(tmp_path / "cols"))


def test_missing_or_unknown_include_files_fail_validation(tmp_path: Path) -> None:
    source = laion_file(tmp_path / "in" / "p.parquet", [url(0)], 0, 1)
    unknown = tmp_path / "ids.csv"
    unknown.write_text("1\n")
    cases = {
        tmp_path / "absent.pth": f"candidates.include: include list {tmp_path}/absent.pth does "
        "not exist",
        unknown: f"candidates.include: include list {unknown}: unsupported format",
    }
    for path, message in cases.items():
        with pytest.raises(ConfigError) as err:
            validate_config(
                {
                    "run_dir": str(tmp_path / "run"),
                    "candidates": {"input": [str(source)], "include": [str(path)]},
                }
            )
        assert message in str(err.value)
        assert "\n" not in str(err.value)


def test_the_card_counts_rows_left_out_by_include_lists() -> None:
    from manifests.report import ShardReport
    from stages.shard.card import _funnel_md

    kept = ShardReport("candidates", (0,), 4, 4, 3, {"candidates:duplicate_url": 1})
    counted = ShardReport(
        "candidates",
        (0,),
        4,
        4,
        3,
        {"candidates:duplicate_url": 1},
        {},
        {"excluded_by_include": 96},
    )
    lines = _funnel_md([counted])
    assert lines[0] == "Input rows left out by the include lists (not candidates): 96"
    assert lines[2:] == _funnel_md([kept])
    assert "| candidates | 4 | 3 | 1 |" in lines
