"""Running only the candidates stage in tests, and reading back what it wrote."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from manifests import schema as S
from pipeline.config import validate_config
from pipeline.runner import RunResult, run_pipeline


def run_candidates_result(tmp: Path, address: str, **section: Any) -> RunResult:
    """Run only the candidates stage into ``tmp / "run"`` on the cluster at ``address``."""
    config = validate_config(
        {
            "run_dir": str(tmp / "run"),
            "stages": ["candidates"],
            "cluster": {"address": address},
            "runner": {"progress": False},
            "candidates": section,
        }
    )
    return run_pipeline(config)


def read_candidates(run_dir: Path) -> pa.Table:
    """All candidates manifests of a run concatenated in (shard, row) order."""
    files = sorted(glob.glob(str(run_dir / "candidates" / "[0-9]*.parquet")))
    return pa.concat_tables(pq.read_table(f) for f in files)


def run_candidates(tmp: Path, address: str, **section: Any) -> pa.Table:
    """Run only the candidates stage; all its manifests concatenated in (shard, row) order."""
    run_candidates_result(tmp, address, **section)
    return read_candidates(tmp / "run")


def by_url(table: pa.Table) -> dict[str, dict[str, Any]]:
    return {row[S.URL_ORIGINAL]: row for row in table.to_pylist()}
