"""Failures, retries, on_shard_error and resuming: the rerun equals an uninterrupted run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from manifests.layout import RunLayout
from pipeline.cli import main
from pipeline.runner import run_pipeline
from stages import STAGES
from tests.conftest import demo_config
from tests.pipeline.manifest_compare import assert_same_manifests


def test_failed_shard_skip_fail_then_resume(
    tmp_path: Path,
    demo_input: Path,
    reference_run: Path,
    dask_address: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_dir = tmp_path / "run"
    joined = [f"cluster.address={dask_address}"]
    # 1. Interrupted after the first stage.
    run_pipeline(demo_config(run_dir, demo_input, *joined), ["candidates"])
    layout = RunLayout(run_dir)
    assert layout.done_shards("candidates") == [0, 1]
    assert layout.done_shards("download") == []

    # 2. Shard 1's input is corrupt: download fails on it (after its retry); skip goes on.
    manifest = layout.manifest("candidates", 1)
    good = manifest.read_bytes()
    manifest.write_bytes(b"not parquet")
    result = run_pipeline(demo_config(run_dir, demo_input, *joined, "runner.on_shard_error=skip"))
    assert not result.ok
    assert list(result.skipped) == list(STAGES)[1:]
    assert all(list(shards) == [1] for shards in result.skipped.values())
    assert result.skipped["download"][1].startswith(
        "download shard 00001 failed after 1 retries: ArrowInvalid: Parquet magic bytes not "
        "found in footer"  # the upstream reader reads the corrupted manifest's schema first
    )
    assert result.skipped["filter"][1] == (
        "filter shard 00001 not run: upstream download shard 00001 failed"
    )
    assert result.skipped["shard"][1] == (
        "shard shard 00001 not run: upstream caption shard 00001 failed"
    )
    assert layout.done_shards("download") == [0]
    assert layout.done_shards("caption") == [0]
    assert "00001" in (run_dir / "report.json").read_text()

    # 3. The same with on_shard_error=fail: one line on stderr, non-zero exit. The runner
    # settings are not part of any fingerprint, so the done candidates shards stay done.
    cfg = tmp_path / "run.yaml"
    failing = demo_config(
        run_dir, demo_input, *joined, "runner.retries=0", "runner.on_shard_error=fail"
    )
    cfg.write_text(yaml.safe_dump(failing.model_dump(mode="json")))
    assert main(["run", str(cfg), "--stages", "candidates", "download"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("laionface run: download shard 00001 failed after 0 retries")

    # 4. Repaired input plus a stale half-written shard (a killed task): rerun resumes.
    manifest.write_bytes(good)
    stale = layout.shard_tmp("download", 1)
    stale.mkdir(parents=True, exist_ok=True)
    (stale / "00000.tar").write_bytes(b"half a tar")
    result = run_pipeline(demo_config(run_dir, demo_input, *joined))
    assert result.ok
    assert layout.done_shards("download") == [0, 1]
    # Dedup decided without shard 1 before: its input changed, so it decides again, whole.
    assert result.actions["dedup"] == {"run": [0, 1], "re-decide": []}
    assert not stale.exists()
    assert_same_manifests(reference_run, run_dir)


def test_rerun_of_a_done_run_changes_nothing(
    tmp_path: Path, demo_input: Path, reference_run: Path, dask_address: str
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    layout = RunLayout(run_dir)
    before = {p: p.read_bytes() for p in run_dir.rglob("[0-9]*.parquet")}
    before_tars = {p: p.read_bytes() for p in run_dir.rglob("*.tar")}
    result = run_pipeline(demo_config(run_dir, demo_input, f"cluster.address={dask_address}"))
    assert result.ok
    assert {p: p.read_bytes() for p in run_dir.rglob("[0-9]*.parquet")} == before
    assert {p: p.read_bytes() for p in run_dir.rglob("*.tar")} == before_tars
    assert result.reports["download"].shards == tuple(layout.done_shards("download"))
