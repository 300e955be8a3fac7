"""``runner.shards_in_flight``: a shard's chain of stages runs before the next shard's starts."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from manifests.layout import RunLayout
from pipeline.runner import run_pipeline
from tests.conftest import demo_config
from tests.pipeline.manifest_compare import assert_same_manifests

# The demo's stages between barriers: candidates and dedup each start a segment.
SEGMENTS = [["candidates", "download", "filter"], ["dedup", "caption"]]


def _times(layout: RunLayout, stage: str, shard: int, marker: str) -> list[datetime]:
    """When the shard log's lines containing ``marker`` were written (asctime leads a line)."""
    lines = layout.shard_log(stage, shard).read_text(encoding="utf-8").splitlines()
    return [datetime.strptime(x[:23], "%Y-%m-%d %H:%M:%S,%f") for x in lines if marker in x]


def test_one_shard_in_flight_finishes_each_chain_before_the_next(
    tmp_path: Path, demo_input: Path, reference_run: Path, dask_address: str
) -> None:
    run_dir = tmp_path / "run"
    config = demo_config(
        run_dir, demo_input, f"cluster.address={dask_address}", "runner.shards_in_flight=1"
    )
    result = run_pipeline(config)
    assert result.ok
    layout = RunLayout(run_dir)
    assert layout.done_shards("filter") == layout.done_shards("caption") == [0, 1]
    for segment in SEGMENTS:
        # Shard 1's first task starts only once shard 0's last task of the segment is done;
        # the two workers would otherwise run both shards' first stage at once.
        first, last = segment[0], segment[-1]
        assert min(_times(layout, first, 1, ": start ")) >= max(_times(layout, last, 0, ": done: "))
    assert_same_manifests(reference_run, run_dir)
