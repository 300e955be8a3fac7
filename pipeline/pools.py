"""Worker pools: which workers a stage's tasks run on, and each worker's device.

A pool is a group of identical workers (``cluster.pools``). Every worker of pool ``P`` offers
the Dask resource ``pool-P`` (as many units as it has threads), and every task of a stage on
``P`` asks for one unit, so a stage's tasks run only on its pool: downloads never queue behind
GPU work and never take a GPU worker's slot. A GPU pool's worker also offers ``GPU: 1`` and
sees exactly one device through ``CUDA_VISIBLE_DEVICES`` (the convention of dask-cuda's
``LocalCUDACluster``); the other pools' workers see none, so nothing on them can take GPU
memory. Without pools, one implicit pool runs every stage and tasks carry only the stage's
own resources (the route of a plain ``dask worker`` fleet).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.config import ClusterConfig, ConfigError, PoolConfig

DEFAULT_POOL = "default"
GPU = "GPU"  # the resource name the stages' ``resources`` use
CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
HIDE_GPUS = ""  # CUDA's documented value for "no device visible"


def pool_resource(pool: str) -> str:
    """The Dask resource that routes tasks to ``pool``'s workers."""
    return f"pool-{pool}"


@dataclass(frozen=True)
class WorkerSpec:
    """One local worker process: its name, threads, memory, resources and environment."""

    name: str
    pool: str
    threads: int
    memory_limit: str
    resources: Mapping[str, float]
    env: Mapping[str, str]


def pools_of(config: ClusterConfig) -> dict[str, PoolConfig]:
    """The configured pools, or the one implicit pool the flat fields describe."""
    if config.pools:
        return dict(config.pools)
    default = PoolConfig(
        stages=["*"],
        workers=config.n_workers,
        threads_per_worker=config.threads_per_worker,
        memory_limit=config.memory_limit,
        resources=dict(config.resources),
    )
    return {DEFAULT_POOL: default}


def task_resources(
    config: ClusterConfig, stage: str, stage_resources: Mapping[str, float]
) -> dict[str, float] | None:
    """The resource annotation of ``stage``'s tasks: its pool's unit plus its own needs."""
    needs = dict(stage_resources)
    if not config.pools:
        return needs or None
    pool = next((name for name, p in config.pools.items() if stage in p.stages), None)
    if pool is None:
        raise ConfigError(f"stage {stage!r} is on no cluster pool: add it to one")
    if needs.get(GPU) and not config.pools[pool].gpus:
        raise ConfigError(
            f"stage {stage!r} needs a GPU but pool {pool!r} has none: set its gpus, move the "
            f"stage to a GPU pool, or set {stage}.gpu: false"
        )
    return {pool_resource(pool): 1.0, **needs}


def worker_resources(name: str, pool: PoolConfig, explicit_pools: bool) -> dict[str, float]:
    """What each worker of ``pool`` offers."""
    offered = dict(pool.resources)
    if explicit_pools:
        offered[pool_resource(name)] = float(pool.threads_per_worker)
    if pool.gpus:
        offered[GPU] = 1.0
    return offered


def device_ids(pool: PoolConfig) -> list[str]:
    """The GPU id each worker of a local GPU pool is pinned to."""
    return [str(d) for d in (pool.devices if pool.devices is not None else range(pool.gpus))]


def local_workers(config: ClusterConfig) -> list[WorkerSpec]:
    """Every worker process of a LocalCluster-like deployment of the pools."""
    pools = pools_of(config)
    any_gpu = any(p.gpus for p in pools.values())
    specs = []
    for name, pool in pools.items():
        devices = device_ids(pool)
        for i in range(pool.n_workers):
            env = {}
            if any_gpu:  # pin GPU workers; hide GPUs from the rest
                env[CUDA_VISIBLE_DEVICES] = devices[i] if pool.gpus else HIDE_GPUS
            specs.append(
                WorkerSpec(
                    name=f"{name}-{i}",
                    pool=name,
                    threads=pool.threads_per_worker,
                    memory_limit=pool.memory_limit,
                    resources=worker_resources(name, pool, bool(config.pools)),
                    env=env,
                )
            )
    return specs
