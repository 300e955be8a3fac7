"""Worker pools: one config, a device per GPU worker, and each stage only on its own pool."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from distributed import Client, get_task_stream

from manifests.device import WorkerDevice
from pipeline.cluster import describe_workers, local_cluster
from pipeline.config import ClusterConfig, ConfigError
from pipeline.pools import task_resources
from pipeline.runner import run_pipeline
from pipeline.worker_device import pinned_devices
from tests.conftest import demo_config
from tests.pipeline.manifest_compare import assert_same_manifests

ONNX = ["CUDAExecutionProvider", "CPUExecutionProvider"]
POOLS = {
    "io": {"stages": ["candidates", "download"], "workers": 1, "memory_limit": "2GiB"},
    "gpu": {"stages": ["filter", "caption"], "gpus": 2, "devices": [3, 5]},
    "cpu": {"stages": ["dedup", "shard"], "workers": 1, "memory_limit": "2GiB"},
}


def _what_backends_get(dask_worker: Any) -> dict[str, object]:
    """On a worker: its device as each model runtime is handed it (the backends' own calls)."""
    device = WorkerDevice.current()
    providers = device.onnx_providers(ONNX, available=ONNX)
    return {
        "name": dask_worker.name,
        "visible": device.visible,
        "physical": device.physical_id,
        "torch": device.torch_device("cuda"),
        "onnxruntime": providers,
        "insightface_ctx_id": device.insightface_ctx_id(providers),
    }


def test_each_gpu_worker_gets_its_own_device_and_cpu_workers_none() -> None:
    config = ClusterConfig(pools=POOLS, dashboard_address=None)  # type: ignore[arg-type]
    with local_cluster(config) as cluster, Client(cluster) as client:
        seen = sorted(client.run(_what_backends_get).values(), key=lambda d: str(d["name"]))
        lines = describe_workers(client)
    cpu = {"visible": "", "physical": None, "torch": "cuda:0"}
    cpu |= {"onnxruntime": ["CPUExecutionProvider"], "insightface_ctx_id": -1}
    gpu = {"torch": "cuda:0", "onnxruntime": ONNX, "insightface_ctx_id": 0}
    assert seen == [
        {"name": "cpu-0", **cpu},
        {"name": "gpu-0", "visible": "3", "physical": "3", **gpu},
        {"name": "gpu-1", "visible": "5", "physical": "5", **gpu},
        {"name": "io-0", **cpu},
    ]
    assert sorted(lines) == [
        "cpu-0: resources [pool-cpu=1], CUDA_VISIBLE_DEVICES=''",
        "gpu-0: resources [GPU=1,pool-gpu=1], CUDA_VISIBLE_DEVICES='3'",
        "gpu-1: resources [GPU=1,pool-gpu=1], CUDA_VISIBLE_DEVICES='5'",
        "io-0: resources [pool-io=1], CUDA_VISIBLE_DEVICES=''",
    ]


def test_auto_device_is_cpu_where_the_worker_sees_no_gpu() -> None:
    assert WorkerDevice("").torch_device("auto") == "cpu"
    assert WorkerDevice("2").torch_device("cuda:0") == "cuda:0"
    assert WorkerDevice("0,1").physical_id is None


@pytest.mark.parametrize(
    ("name", "resources", "visible", "expected"),
    [
        ("gpu-0-0", {"pool-gpu": 1, "GPU": 1}, "4,7", "4"),
        ("gpu-0-1", {"pool-gpu": 1, "GPU": 1}, "4,7", "7"),
        ("gpu-3", {"pool-gpu": 1, "GPU": 1}, "6", None),  # SLURM already gave it one GPU
        ("cpu-0-1", {"pool-cpu": 1}, "4,7", ""),  # a pooled CPU worker sees no GPU
        ("SLURMCluster-0", {}, "4,7", None),  # no pools: left as the site set it
    ],
)
def test_slurm_preload_pins_one_device_per_worker_process(
    name: str, resources: dict[str, float], visible: str, expected: str | None
) -> None:
    assert pinned_devices(name, resources, visible) == expected


def test_preload_refuses_a_gpu_worker_without_a_slot() -> None:
    with pytest.raises(RuntimeError, match=r"worker 'gpu-0-2' sees GPUs \['4', '7'\]"):
        pinned_devices("gpu-0-2", {"GPU": 1}, "4,7")


def test_task_resources_route_each_stage_to_its_pool() -> None:
    config = ClusterConfig(pools=POOLS)  # type: ignore[arg-type]
    assert task_resources(config, "download", {}) == {"pool-io": 1.0}
    assert task_resources(config, "filter", {"GPU": 1.0}) == {"pool-gpu": 1.0, "GPU": 1.0}
    assert task_resources(ClusterConfig(), "filter", {}) is None
    with pytest.raises(ConfigError, match="stage 'dedup' needs a GPU but pool 'cpu' has none"):
        task_resources(config, "dedup", {"GPU": 1.0})


@pytest.mark.parametrize(
    ("pools", "message"),
    [
        (
            {"io": {"stages": ["candidates"]}},
            r"stage\(s\) \['download'\] are on no pool; add them to one",
        ),
        (
            {"a": {"stages": ["candidates", "download"]}, "b": {"stages": ["download"]}},
            r"each stage runs on one pool; \{'download': \['a', 'b'\]\}",
        ),
        ({"a": {"stages": ["downlaod"]}}, r"unknown stage\(s\) \['downlaod'\]"),
        ({"GPU": {"stages": ["candidates"]}}, r"pool names \['GPU'\] must match"),
        ({"g": {"stages": ["filter"], "gpus": 2, "devices": [1]}}, r"exactly gpus=2 ids"),
        ({"g": {"stages": ["filter"], "gpus": 2, "workers": 3}}, r"one worker per GPU"),
    ],
)
def test_pool_config_errors_are_one_line(
    pools: dict[str, object], message: str, demo_input: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        demo_config(tmp_path, demo_input, f"cluster.pools={pools}", "stages=[candidates, download]")
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_demo_on_pools_runs_each_stage_only_on_its_pool(
    reference_run: Path, demo_input: Path, tmp_path: Path
) -> None:
    """The pools' cluster is joined by address, so the task stream can be watched."""
    config = ClusterConfig(pools=POOLS, dashboard_address=None)  # type: ignore[arg-type]
    with local_cluster(config) as cluster, Client(cluster) as client:
        names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
        with get_task_stream(client) as stream:
            result = run_pipeline(
                demo_config(
                    tmp_path / "run",
                    demo_input,
                    f"cluster.address={cluster.scheduler_address}",
                    f"cluster.pools={POOLS}",
                )
            )
    assert result.ok
    assert_same_manifests(reference_run, tmp_path / "run")
    ran_on: dict[str, set[str]] = defaultdict(set)
    for task in stream.data:
        stage = str(task["key"]).split("-")[0]
        ran_on[stage].add(str(names[task["worker"]]).split("-")[0])
    assert {s: ran_on[s] for s in ("candidates", "download", "filter", "caption", "shard")} == {
        "candidates": {"io"},
        "download": {"io"},
        "filter": {"gpu"},
        "caption": {"gpu"},
        "shard": {"cpu"},
    }


def test_adaptive_scaling_takes_one_pool_and_ordered_bounds() -> None:
    two = {"a": {"stages": ["candidates"]}, "b": {"stages": ["download"]}}
    adapt = {"adapt": {"minimum_jobs": 1, "maximum_jobs": 4}}
    with pytest.raises(ValueError, match=r"cluster\.slurm\.adapt scales one pool"):
        ClusterConfig(pools=two, slurm=adapt)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="maximum_jobs 1 < minimum_jobs 3"):
        ClusterConfig(slurm={"adapt": {"minimum_jobs": 3, "maximum_jobs": 1}})  # type: ignore[arg-type]
    assert ClusterConfig(slurm=adapt).slurm.adapt.maximum_jobs == 4  # type: ignore[arg-type,union-attr]
