"""Shared fixtures: offline environment, a Dask cluster, the photo server and a demo run."""

from __future__ import annotations

import os

# Before any library import: no hub access, no albumentations update check, quiet Dask.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import RunConfigBase, load_config
from pipeline.demo import DEMO_CONFIG, allow_photo_server, demo_rows
from pipeline.demo_server import serve_photos
from pipeline.runner import run_pipeline

LAION_10K = Path(__file__).resolve().parents[2] / "shared" / "data" / "laion_urls_10k.parquet"
# Demo input file -> base URL of the photo server its URLs point at (filled by demo_input).
_PHOTO_SERVER_OF: dict[Path, str] = {}


@pytest.fixture(scope="session")
def dask_address() -> Iterator[str]:
    """A LocalCluster of two worker processes shared by tests that join it by address."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        memory_limit="3GiB",
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="session")
def photo_base() -> Iterator[str]:
    """Base URL of the loopback photo server (its slow route answers after 30 s)."""
    with serve_photos() as base:
        yield base


@pytest.fixture(scope="session")
def demo_input(photo_base: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's candidate parquet, pointing at this session's photo server."""
    path = tmp_path_factory.mktemp("demo-input") / "demo_candidates.parquet"
    pq.write_table(demo_rows(photo_base), path)
    _PHOTO_SERVER_OF[path] = photo_base
    return path


def demo_config(run_dir: Path, input_file: Path, *overrides: str) -> RunConfigBase:
    """configs/demo.yaml with this run's directory and input; the download may contact the
    photo server of ``demo_input`` (its exact address and port), as ``laionface demo`` does."""
    server = _PHOTO_SERVER_OF.get(input_file)
    return load_config(
        DEMO_CONFIG,
        [
            f"run_dir={run_dir}",
            f"candidates.input=[{input_file}]",
            "runner.progress=false",
            *([allow_photo_server(server)] if server else []),
            *overrides,
        ],
    )


@pytest.fixture(scope="session")
def reference_run(demo_input: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo config run once, uninterrupted, on its default LocalCluster: the run dir."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = run_pipeline(demo_config(run_dir, demo_input))
    assert result.ok
    return run_dir


def write_parquet(path: Path, columns: dict[str, list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path
