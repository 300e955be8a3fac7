"""Config-aware resume: a rerun recomputes exactly the shards whose fingerprint changed, and
what depends on them; thresholds re-decide from stored scores; run.json keeps every record."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests import schema as S
from manifests.io import read_done, read_manifest, read_marker
from manifests.layout import RunLayout
from manifests.run_record import read_run_history
from pipeline.cli import main
from pipeline.runner import plan_pipeline, run_pipeline
from tests.conftest import demo_config
from tests.pipeline.manifest_compare import assert_same_manifests

NOTHING: dict[str, list[int]] = {"run": [], "re-decide": []}
ALL_RUN = {"run": [0, 1], "re-decide": []}
STRICT = "filter.face_size.min_px=120"


def _copy(reference_run: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    return run_dir


def _scores(layout: RunLayout) -> list[object]:
    columns = [S.FACE_SIZE_PX, S.FACE_BOX, S.NSFW_SCORE]
    return [read_manifest(layout, "filter", s, columns).to_pylist() for s in (0, 1)]


def test_threshold_change_redecides_and_going_back_equals_the_reference(
    tmp_path: Path, demo_input: Path, reference_run: Path, dask_address: str
) -> None:
    run_dir = _copy(reference_run, tmp_path)
    layout = RunLayout(run_dir)
    joined = f"cluster.address={dask_address}"
    scores = _scores(layout)

    assert plan_pipeline(demo_config(run_dir, demo_input, joined, STRICT)) == [
        "candidates: 0 to run, 0 to re-decide, 2 up to date",
        "download: 0 to run, 0 to re-decide, 2 up to date",
        "filter: 0 to run, 2 to re-decide, 0 up to date (2 thresholds changed); "
        "changed: filter.face_size.min_px: 80.0 -> 120.0",
        "dedup: 2 to run, 0 to re-decide, 0 up to date (2 upstream changed)",
        "caption: 2 to run, 0 to re-decide, 0 up to date (2 upstream changed)",
        "shard: 2 to run, 0 to re-decide, 0 up to date (2 upstream changed)",
    ]
    strict = run_pipeline(demo_config(run_dir, demo_input, joined, STRICT))
    assert strict.actions == {
        "candidates": NOTHING,
        "download": NOTHING,
        "filter": {"run": [], "re-decide": [0, 1]},
        "dedup": ALL_RUN,
        "caption": ALL_RUN,
        "shard": ALL_RUN,
    }
    # Same verdicts as `refilter` gives for this threshold (tests/stages/test_filter_dedup.py);
    # tightening never needs a score that was not computed, so no model ran.
    report = strict.reports["filter"]
    assert report.dropped == {
        "face_count:zero": 4, "face_confidence:low": 2, "face_size:too_small": 3,
        "image:too_small": 1,
    }  # fmt: skip
    assert report.n_out == 3
    assert report.counters["redecided"] == 2
    assert _scores(layout) == scores

    # Back to the default: the strict decision was a re-decision, so the rows face_size now
    # lets through (the astronauts) kept the scores the reference run gave them, and each
    # shard's `not_scored` column says so: every shard is re-decided, no model runs, and the
    # result is exactly the reference run.
    back = run_pipeline(demo_config(run_dir, demo_input, joined))
    assert back.actions["filter"] == {"run": [], "re-decide": [0, 1]}
    for shard in (0, 1):
        shard_report = read_done(layout, "filter", shard)
        assert shard_report is not None
        assert "redecided" in shard_report.counters
    assert _scores(layout) == scores
    assert_same_manifests(reference_run, run_dir)

    again = run_pipeline(demo_config(run_dir, demo_input, joined))
    assert all(a == NOTHING for a in again.actions.values())


def test_what_is_scored_or_captioned_reruns_that_stage_and_below(
    tmp_path: Path, demo_input: Path, reference_run: Path, dask_address: str
) -> None:
    run_dir = _copy(reference_run, tmp_path)
    layout = RunLayout(run_dir)
    joined = f"cluster.address={dask_address}"
    audit = "filter.score_rejected=true"
    rescored = run_pipeline(demo_config(run_dir, demo_input, joined, audit))
    assert rescored.actions == {
        "candidates": NOTHING,
        "download": NOTHING,
        "filter": ALL_RUN,
        "dedup": ALL_RUN,
        "caption": ALL_RUN,
        "shard": ALL_RUN,
    }
    assert rescored.reports["filter"].dropped == {
        "face_count:zero": 4,
        "face_confidence:low": 2,
        "image:too_small": 1,
    }

    short = demo_config(run_dir, demo_input, joined, audit, "caption.cleaning.max_words=5")
    assert plan_pipeline(short)[4] == (
        "caption: 2 to run, 0 to re-decide, 0 up to date (2 what produced it changed); "
        "changed: caption.cleaning.max_words: 150 -> 5"
    )
    recaptioned = run_pipeline(short)
    assert {k: v["run"] for k, v in recaptioned.actions.items()} == {
        "candidates": [],
        "download": [],
        "filter": [],
        "dedup": [],
        "caption": [0, 1],
        "shard": [0, 1],
    }
    captions = [
        c for s in (0, 1) for c in read_manifest(layout, "caption", s)[S.CAPTION].to_pylist()
    ]
    kept = [c for c in captions if c is not None]
    assert len(kept) == 4
    assert all(len(c.split()) <= 5 for c in kept)
    published = [
        c
        for index in sorted((run_dir / "shards").glob("*.parquet"))
        for c in pq.read_table(index, columns=[S.CAPTION])[S.CAPTION].to_pylist()
    ]
    assert len(published) == 4
    assert all(len(c.split()) <= 5 for c in published)


def test_run_json_keeps_one_record_per_invocation(
    tmp_path: Path,
    demo_input: Path,
    reference_run: Path,
    dask_address: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = _copy(reference_run, tmp_path)
    layout = RunLayout(run_dir)
    first = read_run_history(layout).records
    assert [r.outcome for r in first] == ["ok"]
    marker = read_marker(layout, "shard", 0)
    assert marker is not None and marker.run_id == first[0].run_id

    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"run_dir: {run_dir}\nstages: [candidates]\ncandidates: {{input: []}}\n")
    assert main(["run", str(cfg)]) == 2  # fails in the candidates stage: an empty input
    assert "candidates.input is empty" in capsys.readouterr().err
    history = read_run_history(layout)
    assert [r.outcome for r in history.records] == ["ok", "failed"]
    assert history.records[0] == first[0]  # never overwritten
    assert history.records[1].stages == ("candidates",)
    assert history.records[1].finished_at is not None

    # The card names the invocation that produced the shards, not the failed later one.
    card = (run_dir / "shards" / "README.md").read_text(encoding="utf-8")
    assert f"config fingerprint: `{first[0].config_fingerprint}` (run `{first[0].run_id}`" in card
    report = read_done(layout, "shard", 0)
    assert report is not None and report.shards == (0,)


def test_dry_run_cli_prints_the_plan_and_runs_nothing(
    tmp_path: Path, demo_input: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "fresh"
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"run_dir: {run_dir}\nstages: [candidates, download]\n"
        f"candidates: {{input: ['{demo_input}'], allow_private_hosts: true}}\n"
    )
    assert main(["run", str(cfg), "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "candidates: all shards to run (the candidates stage has not planned yet)",
        "download: all shards to run (the candidates stage has not planned yet)",
    ]
    assert not run_dir.exists()


def test_an_input_replaced_under_the_same_name_reruns_everything(
    tmp_path: Path, demo_input: Path, reference_run: Path, dask_address: str
) -> None:
    run_dir = _copy(reference_run, tmp_path)
    config = demo_config(run_dir, demo_input, f"cluster.address={dask_address}")
    original, stat = demo_input.read_bytes(), demo_input.stat()
    rows = pq.read_table(demo_input)
    texts = rows["TEXT"].to_pylist()
    changed = rows.set_column(
        rows.column_names.index("TEXT"), "TEXT", pa.array(["another caption", *texts[1:]])
    )
    try:
        pq.write_table(changed, demo_input)  # same name, same rows and row groups
        assert plan_pipeline(config)[:2] == [
            "candidates: 2 to run, 0 to re-decide, 0 up to date (2 what produced it changed); "
            "changed: candidates: an input or model file, or the version (same settings)",
            "download: 2 to run, 0 to re-decide, 0 up to date (2 upstream changed)",
        ]
    finally:  # the session's other tests read this input, as it was
        demo_input.write_bytes(original)
        os.utime(demo_input, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert plan_pipeline(config)[0] == "candidates: 0 to run, 0 to re-decide, 2 up to date"
