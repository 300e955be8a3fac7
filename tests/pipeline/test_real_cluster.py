"""A separate `dask scheduler` and two `dask worker` processes on loopback, joined by address."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.runner import run_pipeline
from tests.conftest import demo_config
from tests.pipeline.manifest_compare import assert_same_manifests


def _wait_for(path: Path, timeout_s: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.is_file() and path.stat().st_size > 0:
            data: dict[str, object] = json.loads(path.read_text())
            if data.get("address"):
                return data
        time.sleep(0.2)
    raise TimeoutError(f"no scheduler file at {path}")


@pytest.fixture
def external_cluster(tmp_path: Path) -> Iterator[str]:
    """Scheduler and workers as their own OS processes, as on a real cluster."""
    env = {**os.environ, "DASK_LOGGING__DISTRIBUTED": "warning"}
    bindir = Path(sys.executable).parent
    sched_file = tmp_path / "scheduler.json"
    procs = [
        subprocess.Popen(
            [
                str(bindir / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(sched_file),
            ],
            env=env,
        )
    ]
    try:
        address = str(_wait_for(sched_file)["address"])
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        str(bindir / "dask"),
                        "worker",
                        address,
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--no-dashboard",
                        "--name",
                        f"w{i}",
                        "--local-directory",
                        str(tmp_path / f"w{i}"),
                    ],
                    env=env,
                )
            )
        _wait_for_workers(address, 2)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def _wait_for_workers(address: str, n: int) -> None:
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(n, timeout=60)


def test_external_scheduler_gives_the_same_manifests(
    tmp_path: Path, demo_input: Path, reference_run: Path, external_cluster: str
) -> None:
    run_dir = tmp_path / "run"
    result = run_pipeline(demo_config(run_dir, demo_input, f"cluster.address={external_cluster}"))
    assert result.ok
    assert_same_manifests(reference_run, run_dir)
