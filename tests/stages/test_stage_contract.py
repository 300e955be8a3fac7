"""Contract tests over the STAGES registry: a stage is tested by being registered.

Every registered stage must be part of the demo config (so it runs here), write exactly its
declared columns, keep one row per candidate, balance its report, and rerun idempotently.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from manifests import schema as S
from manifests.io import read_done
from manifests.layout import RunLayout
from pipeline.config import RunConfigBase, load_config
from pipeline.demo import DEMO_CONFIG
from stages import STAGES, RunContext, build_stage
from tests.conftest import demo_config


@pytest.fixture(scope="module")
def config_for(demo_input: Path, reference_run: Path) -> RunConfigBase:
    return demo_config(reference_run, demo_input)


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_runs_in_the_demo(name: str) -> None:
    assert name in load_config(DEMO_CONFIG).stages


@pytest.mark.parametrize("name", list(STAGES))
def test_output_schema_and_row_accounting(
    name: str, reference_run: Path, config_for: RunConfigBase
) -> None:
    stage = build_stage(name, config_for.stage_config(name))
    layout = RunLayout(reference_run)
    shards = layout.done_shards(name)
    assert shards, f"{name} wrote no shard"
    for shard in shards:
        table = pq.read_table(layout.manifest(name, shard))
        assert table.schema.names[: len(stage.columns)] == list(stage.columns)
        assert table.schema.remove_metadata() == S.schema_for(stage.columns)
        n_candidates = pq.read_metadata(layout.manifest("candidates", shard)).num_rows
        assert table.num_rows == n_candidates  # rows are never dropped
        assert len(set(table[S.SAMPLE_ID].to_pylist())) == table.num_rows
        report = read_done(layout, name, shard)
        assert report is not None and report.balanced()
        assert report.n_rows == table.num_rows
        assert report.n_out == sum(table[S.KEEP].to_pylist())
        reasons = [r for r in table[S.REJECT_REASON].to_pylist() if r]
        assert all(r.count(":") >= 1 for r in reasons)


@pytest.mark.parametrize("name", list(STAGES))
def test_run_shard_is_idempotent(
    name: str, tmp_path: Path, reference_run: Path, config_for: RunConfigBase
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    stage = build_stage(name, config_for.stage_config(name))
    layout = RunLayout(run_dir)
    before = _stable(pq.read_table(layout.manifest(name, 0)))
    report = stage.run_shard(0, RunContext(run_dir))
    after = _stable(pq.read_table(layout.manifest(name, 0)))
    assert after.equals(before)
    old = read_done(layout, name, 0)
    assert old is not None
    assert (report.n_rows, report.n_in, report.n_out, report.dropped) == (
        old.n_rows,
        old.n_in,
        old.n_out,
        old.dropped,
    )


def _stable(table: pa.Table) -> pa.Table:
    """The manifest without the columns that measure time."""
    return table.drop_columns([c for c in table.column_names if c in S.VOLATILE_COLUMNS])


@pytest.mark.parametrize("name", list(STAGES))
def test_stage_pickles_by_reference(name: str, config_for: RunConfigBase) -> None:
    """Every task carries its stage: plain pickle (which finds each class by name, unlike
    cloudpickle's copy of a class built at run time) must take it, and the copy must match.
    The filter stage's section is such a built class; carried by value it was 54 KB a task."""
    stage = build_stage(name, config_for.stage_config(name))
    data = pickle.dumps(stage)
    assert len(data) < 8_000
    copy = pickle.loads(data)
    assert type(copy) is type(stage) and copy.config == stage.config
