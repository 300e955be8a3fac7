"""Killed at any point, same result (issue 11, part 3).

Workers are SIGKILLed mid-shard in download, filter, caption and shard, and the driver mid-run;
the run (Dask reschedules a killed worker's task, the Nanny restarts the worker) or its rerun
must publish the same bytes as an uninterrupted run, with no sample missing or duplicated.

Kill points are exact, not timed: a worker running a download shard is found by its
img2dataset subprocess; the others die inside a chosen file operation (``faults``); the driver
is killed once the run directory shows shards done and others in flight.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from distributed import Client, LocalCluster

from manifests import schema as S
from manifests.layout import RunLayout
from pipeline.cli import main
from pipeline.runner import RunResult, run_pipeline
from stages import STAGES
from tests.conftest import demo_config
from tests.pipeline.faults import (
    DEADLINE_S,
    KillOnFileEvent,
    KillPoint,
    card_summary,
    gone,
    kept_ids,
    poll,
    published_digests,
    published_ids,
    read_kill,
    temp_files,
    wait_gone,
    write_config,
)
from tests.pipeline.manifest_compare import assert_same_manifests

REPO = Path(__file__).resolve().parents[2]
# The demo config as the reference ran it (runner and cluster settings are in no fingerprint).
# No task retries: Dask's rescheduling of a killed worker's task must be enough.
OVERRIDES = ("runner.retries=0",)
I2D_MODULE = "stages.img2dataset_shard"
SHARDWISE = ("download", "filter", "caption")


@pytest.fixture
def kill_cluster() -> Iterator[Client]:
    """A LocalCluster of its own (its workers get killed), and a client to arm kill points."""
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit="3GiB",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def stage_ids(layout: RunLayout, stage: str) -> list[str]:
    """The sample ids of every row of the stage's manifests, sorted (duplicates kept)."""
    column = [S.SAMPLE_ID]
    tables = [
        pq.read_table(layout.manifest(stage, s), columns=column) for s in layout.done_shards(stage)
    ]
    return sorted(sid for t in tables for sid in t[S.SAMPLE_ID].to_pylist())


def assert_same_corpus(reference: Path, run_dir: Path) -> None:
    """Byte-identical published files (the card: its summary), every sample once, the same
    manifests, and no temp file left anywhere."""
    assert published_digests(run_dir) == published_digests(reference)
    assert card_summary(run_dir) == card_summary(reference)
    ids = published_ids(run_dir)
    assert len(ids) == len(set(ids))
    assert ids == published_ids(reference)
    assert sorted(ids) == kept_ids(run_dir)
    layout = RunLayout(run_dir)
    candidates = stage_ids(layout, "candidates")
    assert len(candidates) == len(set(candidates))
    for stage in STAGES:  # every candidate has exactly one row in every stage
        assert stage_ids(layout, stage) == candidates, stage
    assert temp_files(run_dir) == []
    assert_same_manifests(reference, run_dir)


@dataclass(frozen=True)
class DownloadKill:
    shard: int
    worker: psutil.Process
    img2dataset: psutil.Process  # the subprocess the killed worker was waiting for


def kill_download_worker(layout: RunLayout, run: Future[RunResult]) -> DownloadKill:
    """SIGKILL the first worker seen waiting for its img2dataset process to download a shard
    (its shard in flight: the worker writes the shard's marker only after the answer)."""

    def find() -> DownloadKill | None:
        for proc, shard in img2dataset_processes(layout.root):
            try:
                worker = proc.parent()
            except psutil.Error:
                continue
            if worker is not None:
                return DownloadKill(shard, worker, proc)
        return None

    found = poll("img2dataset subprocess", find, alive=lambda: not run.done())
    assert not layout.done_marker("download", found.shard).exists()
    found.worker.send_signal(signal.SIGKILL)
    wait_gone([found.worker])
    return found


def test_workers_killed_mid_shard_in_every_stage(
    tmp_path: Path, demo_input: Path, reference_run: Path, kill_cluster: Client
) -> None:
    run_dir = tmp_path / "run"
    layout = RunLayout(run_dir)
    points = {
        # filter: its manifest renamed into place, the marker's temp file about to be opened
        "filter": KillPoint("open", f"{run_dir}/filter/_done/.?????.json.*.tmp"),
        # caption: its manifest fully written under the temp name, not renamed yet
        "caption": KillPoint("os.rename", f"{run_dir}/caption/.?????.parquet.*.tmp"),
        # shard: a final tar written but not in place; a tar in place without its index;
        # a per-input-shard manifest about to be renamed
        "shard-tar": KillPoint("os.rename", f"{run_dir}/shards/.00000.tar.*.tmp"),
        "shard-index": KillPoint("os.rename", f"{run_dir}/shards/.00001.parquet.*.tmp"),
        "shard-manifest": KillPoint("os.rename", f"{run_dir}/shard/.?????.parquet.*.tmp"),
    }
    flags = tmp_path / "kills"
    flags.mkdir()
    for name, point in points.items():
        kill_cluster.register_plugin(KillOnFileEvent(point, flags / name), name=f"kill-{name}")
    address = kill_cluster.scheduler.address
    config = demo_config(run_dir, demo_input, f"cluster.address={address}", *OVERRIDES)
    pool = ThreadPoolExecutor(1)
    try:
        run = pool.submit(run_pipeline, config)
        download = kill_download_worker(layout, run)
        result = run.result(timeout=DEADLINE_S)
    finally:
        # Not joined: a run that never ends fails the test here, and the cluster's teardown
        # (the fixture's) ends the run, instead of a join that would wait for it forever.
        pool.shutdown(wait=False)
        for name in points:
            # A worker still starting after its kill may not have set the plugin up yet: it
            # answers KeyError, and the others (and the scheduler) have removed it already.
            with contextlib.suppress(KeyError):
                kill_cluster.unregister_worker_plugin(f"kill-{name}")
    # Dask ran each killed task again, on a live worker; no task retry was needed.
    assert result.ok
    assert result.actions == {s: {"run": [0, 1], "re-decide": []} for s in STAGES}
    kills = {name: read_kill(flags / name) for name in points}
    assert {n: (k.event, k.path.parent) for n, k in kills.items()} == {
        "filter": ("open", layout.stage_dir("filter") / "_done"),
        "caption": ("os.rename", layout.stage_dir("caption")),
        "shard-tar": ("os.rename", run_dir / "shards"),
        "shard-index": ("os.rename", run_dir / "shards"),
        "shard-manifest": ("os.rename", layout.stage_dir("shard")),
    }
    assert all(not psutil.pid_exists(k.pid) or gone(psutil.Process(k.pid)) for k in kills.values())
    # The orphaned img2dataset subprocess ran on; once it is gone, nothing it did shows.
    wait_gone([download.img2dataset])
    assert_same_corpus(reference_run, run_dir)


def done_and_in_flight(layout: RunLayout) -> dict[str, dict[str, list[int]]] | None:
    """Per shardwise stage, the shards done and those started but not done, once a download
    shard is done while some shard is in flight (None before): a shard has started when its
    log exists, and is done when its marker does."""
    state: dict[str, dict[str, list[int]]] = {}
    for stage in SHARDWISE:
        logs = layout.stage_dir(stage) / "_logs"
        started = sorted(int(p.stem) for p in logs.glob("[0-9]*.log")) if logs.is_dir() else []
        done = layout.done_shards(stage)
        state[stage] = {"done": done, "in flight": [s for s in started if s not in done]}
    busy = any(state[s]["in flight"] for s in SHARDWISE)
    return state if state["download"]["done"] and busy else None


def test_driver_killed_mid_run_then_rerun(
    tmp_path: Path, demo_input: Path, reference_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    layout = RunLayout(run_dir)
    cfg = write_config(tmp_path / "run.yaml", demo_config(run_dir, demo_input, *OVERRIDES))
    with (tmp_path / "driver.log").open("wb") as log:
        driver = psutil.Popen(
            [sys.executable, "-m", "pipeline.cli", "run", str(cfg)],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        state = poll(
            "shards done and in flight",
            lambda: done_and_in_flight(layout),
            lambda: driver.poll() is None,
        )
        workers = driver.children()
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    # Its worker processes exit with it (and stop writing markers); img2dataset subprocesses
    # they started run on, into their own attempt's scratch space, during the rerun.
    wait_gone(workers)
    orphans = [proc for proc, _ in img2dataset_processes(run_dir)]
    done = {stage: layout.done_shards(stage) for stage in STAGES}
    assert any(state[s]["in flight"] for s in SHARDWISE)
    assert done["download"] and not (run_dir / "shards").exists()

    assert main(["run", str(cfg)]) == 0
    capsys.readouterr()
    wait_gone(orphans)
    # Exactly the shards without a marker ran again, from scratch; the others were kept.
    actions = {
        s: v["actions"] for s, v in json.loads((run_dir / "report.json").read_text()).items()
    }
    shards = layout.done_shards("candidates")
    assert actions == {
        stage: {"run": [s for s in shards if s not in done[stage]], "re-decide": []}
        for stage in STAGES
    }
    assert_same_corpus(reference_run, run_dir)


def img2dataset_processes(run_dir: Path) -> list[tuple[psutil.Process, int]]:
    """The img2dataset processes downloading a shard of ``run_dir``, with that shard: a
    process writes its output to the shard's log only while it runs the shard."""
    logs = RunLayout(run_dir).stage_dir("download") / "_logs"
    found = []
    for proc in psutil.process_iter():
        try:
            if I2D_MODULE not in proc.cmdline():
                continue
            paths = [Path(f.path) for f in proc.open_files()]
        except psutil.Error:
            continue
        found += [(proc, int(p.stem)) for p in paths if p.parent == logs][:1]
    return found
