"""The demo config through ``cluster.slurm`` on a real SLURM controller (``.ci/slurm up``).

Three pools become three SLURM jobs: candidates+download, a two-GPU pool for filter+caption
(no GPUs here: the job's prologue exports the two ids SLURM's gres would, and the worker
preload pins one to each process), and dedup+shard. The manifests must equal those of the
LocalCluster reference run. Where no controller answers the test skips, unless
``LAIONFACE_REQUIRE_SLURM=1`` (CI sets it), where it fails.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.runner import run_pipeline
from tests.conftest import demo_config
from tests.pipeline.manifest_compare import assert_same_manifests

GPU_IDS = "4,7"  # what SLURM would export to a job granted GPUs 4 and 7 of a node


def _slurm_answers() -> str | None:
    """Why SLURM cannot be used here, or None when its controller answers."""
    if shutil.which("sbatch") is None:
        return "no sbatch on PATH"
    probe = subprocess.run(
        ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=60, check=False
    )
    if probe.returncode != 0 or not {"idle", "mix"} & set(probe.stdout.split()):
        return f"no idle SLURM node (sinfo: {probe.stdout.strip() or probe.stderr.strip()})"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    why = _slurm_answers()
    if why is None:
        return
    if os.environ.get("LAIONFACE_REQUIRE_SLURM") == "1":
        pytest.fail(f"LAIONFACE_REQUIRE_SLURM=1 but {why}: start one with .ci/slurm up DIR")
    pytest.skip(f"{why}: start one with `.ci/slurm up DIR` (as root)")


def _slurm_overrides(logs: Path) -> list[str]:
    pools = (
        "{io: {stages: [candidates, download], workers: 1, memory_limit: 2GiB},"
        " gpu: {stages: [filter, caption], gpus: 2, memory_limit: 3GiB},"
        " cpu: {stages: [dedup, shard], workers: 1, memory_limit: 2GiB}}"
    )
    return [
        f"cluster.pools={pools}",
        "cluster.dashboard_address=null",
        (
            "cluster.slurm={interface: lo, start_timeout_s: 300, gres_gpus: false,"
            f" log_directory: {logs},"
            f" job_script_prologue: ['export CUDA_VISIBLE_DEVICES={GPU_IDS}']}}"
        ),
    ]


@pytest.mark.slow
def test_demo_through_slurm_matches_local_cluster(
    slurm: None,
    reference_run: Path,
    demo_input: Path,
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    logs = tmp_path / "slurm-logs"
    result = run_pipeline(demo_config(run_dir, demo_input, *_slurm_overrides(logs)))
    assert result.ok
    assert_same_manifests(reference_run, run_dir)

    # dask-jobqueue names each job's log after its SLURM job id: three jobs, one per pool.
    job_ids = sorted({p.stem.rsplit("-", 1)[-1] for p in logs.glob("laionface-*-*.err")})
    logging.getLogger(__name__).warning("SLURM job ids: %s", job_ids)
    assert len(job_ids) == 3 and all(j.isdigit() for j in job_ids), sorted(logs.iterdir())
    # Each worker's pool and device: GPU workers pinned, one id each, in slot order; the other
    # pools see no GPU.
    line = re.compile(r"(\S+): resources \[([^\]]*)\], CUDA_VISIBLE_DEVICES=(\S+)")
    workers = {m[1]: (m[2], m[3]) for m in map(line.fullmatch, result.workers) if m}
    assert workers == {
        "io-0": ("pool-io=1", "''"),
        "gpu-0-0": ("GPU=1,pool-gpu=1", "'4'"),
        "gpu-0-1": ("GPU=1,pool-gpu=1", "'7'"),
        "cpu-0": ("pool-cpu=1", "''"),
    }, result.workers


@pytest.mark.slow
def test_adaptive_slurm_jobs_stay_within_their_bounds(
    slurm: None, reference_run: Path, demo_input: Path, tmp_path: Path
) -> None:
    """One pool (the flat workers), its jobs scaled by dask-jobqueue's ``adapt``."""
    logs = tmp_path / "slurm-logs"
    run_dir = tmp_path / "run"
    slurm = (
        "cluster.slurm={interface: lo, start_timeout_s: 300,"
        f" log_directory: {logs}, adapt: {{minimum_jobs: 1, maximum_jobs: 2}}}}"
    )
    config = demo_config(
        run_dir,
        demo_input,
        "stages=[candidates, download]",
        "cluster.dashboard_address=null",
        slurm,
    )
    result = run_pipeline(config)
    assert result.ok
    assert_same_manifests(reference_run, run_dir, ["candidates", "download"])
    job_ids = {p.stem.rsplit("-", 1)[-1] for p in logs.glob("laionface-default-*.err")}
    assert 1 <= len(job_ids) <= 2, sorted(logs.iterdir())
    # Two worker processes per job (the flat n_workers), all of the first job at the start.
    assert len(result.workers) >= 2
