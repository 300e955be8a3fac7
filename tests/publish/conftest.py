"""Fixtures: a hand-built finished run, and the same run after the shard stage published it."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from stages.base import RunContext
from stages.shard.stage import ShardConfig
from tests.publish.synthetic import build_run

# Two samples per tar: the six publishable samples make three tars.
SHARD_CONFIG = ShardConfig(samples_per_shard=2, dataset_name="Synthetic faces")


@pytest.fixture(scope="session")
def local_client() -> Iterator[object]:
    """An in-process Dask cluster (threads): enough for prepare's map/gather."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def publish(run_dir: Path, client: object, config: ShardConfig = SHARD_CONFIG) -> None:
    """Run the shard stage as the runner does: prepare, then every input shard."""
    stage = config.build()
    ctx = RunContext(run_dir)
    stage.prepare(ctx, client)  # type: ignore[arg-type]
    for shard in stage.shards(ctx):
        from manifests.io import write_done

        write_done(ctx.layout, stage.run_shard(shard, ctx))


@pytest.fixture(scope="session")
def published_run(tmp_path_factory: pytest.TempPathFactory, local_client: object) -> Path:
    """A run through the shard stage (read-only: copy it before changing it)."""
    root = tmp_path_factory.mktemp("published") / "run"
    build_run(root)
    publish(root, local_client)
    return root


@pytest.fixture
def run_copy(published_run: Path, tmp_path: Path) -> Path:
    """A private copy of the published run, for tests that change it."""
    target = tmp_path / "run"
    shutil.copytree(published_run, target)
    return target
