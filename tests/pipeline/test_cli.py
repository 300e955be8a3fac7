"""`laionface demo`, `status` and `inspect` as a person runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from manifests import schema as S
from manifests.layout import RunLayout
from pipeline.cli import main
from stages import STAGES


def test_demo_prints_outputs_and_funnel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path / "demo"), "--set", "runner.progress=false"]) == 0
    out = capsys.readouterr().out
    assert f"run dir: {tmp_path / 'demo' / 'run'}" in out
    assert "  candidates  in       23  kept       19  dropped        4" in out
    assert "  download    in       19  kept       13  dropped        6" in out
    assert "             2  download:undecodable" in out
    assert "  filter      in       13  kept        6  dropped        7" in out
    assert "             4  face_count:zero" in out
    assert "             2  face_confidence:low" in out
    assert "  dedup       in        6  kept        4  dropped        2" in out
    assert "  caption     in        4  kept        4  dropped        0" in out
    layout = RunLayout(tmp_path / "demo" / "run")
    assert layout.run_json.is_file() and layout.done_shards("download") == [0, 1]


def test_status_lists_stages_and_reasons(
    reference_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", str(reference_run)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (
        "candidates  shards 2/2 done, 0 failed, 0 missing | samples 23/23"
        " | rows in 23, kept 19, dropped 4"
    )
    download = next(line for line in lines if line.startswith("download"))
    assert (
        download == "download    shards 2/2 done, 0 failed, 0 missing | samples 23/23"
        " | rows in 19, kept 13, dropped 6"
    )
    assert "           2  download:undecodable" in lines


def test_inspect_shows_one_sample_across_stages(
    reference_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = RunLayout(reference_run)
    # Which shard holds a failure depends on the photo server's port (it is in every URL, so
    # in every sample_id): look through all of them.
    rows = (
        r
        for shard in layout.done_shards("download")
        for r in pq.read_table(layout.manifest("download", shard)).to_pylist()
    )
    row = next(r for r in rows if r[S.DL_STATUS] == "failed_to_download")
    assert main(["inspect", str(reference_run), "--sample-id", row[S.SAMPLE_ID]]) == 0
    history = json.loads(capsys.readouterr().out)
    assert list(history) == list(STAGES)  # one row in every stage, in pipeline order
    assert history["download"][S.REJECT_REASON] == row[S.REJECT_REASON]
    assert history["candidates"][S.KEEP] is True


def test_status_and_inspect_refuse_non_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"laionface status: {tmp_path} is not a run directory (no run.json): pass a run_dir"
    )
