"""Connecting to Dask: local worker pools by default, an existing scheduler, or SLURM.

DESIGN.md §4: dask.distributed always; local workers are processes (so pickling bugs show up
in tests); ``cluster.address`` joins a running scheduler; dask-jobqueue runs the same pools as
SLURM jobs. Both deployments are a ``SpecCluster`` whose worker specs come from
``pipeline.pools``: one Nanny per local worker (with its own ``CUDA_VISIBLE_DEVICES``), or one
``SLURMJob`` per job of each pool.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dask
from dask.utils import format_bytes, parse_bytes
from distributed import Client, Nanny, Scheduler, SpecCluster

from pipeline.config import ClusterConfig, ConfigError, PoolConfig, SlurmConfig
from pipeline.pools import (
    CUDA_VISIBLE_DEVICES,
    local_workers,
    pool_resource,
    pools_of,
    worker_resources,
)

log = logging.getLogger(__name__)
# The dedup stage's dataframe shuffles make Dask log every shuffle start/stop at WARNING.
logging.getLogger("distributed.shuffle._scheduler_plugin").setLevel(logging.ERROR)
# Narrows a multi-GPU SLURM job's CUDA_VISIBLE_DEVICES to one device per worker process.
DEVICE_PRELOAD = "pipeline.worker_device"


# Dask's one length for its developer logs: each comm's recent messages (the scheduler keeps one
# per worker), the scheduler's transition log and its event topics (distributed-schema.yaml).
MESSAGE_LOG_LENGTH = "distributed.admin.low-level-log-length"


@contextmanager
def open_client(config: ClusterConfig) -> Iterator[Client]:
    """A connected client for the configured cluster; closed (and a cluster it started) after.

    A cluster this starts (its scheduler runs in this process) keeps ``message_log_length``
    messages per log; a scheduler joined by address keeps what its own config says."""
    with dask.config.set({MESSAGE_LOG_LENGTH: config.message_log_length}):
        if config.address:
            with Client(config.address, timeout="30s") as client:
                _log_dashboard(client)
                yield client
            return
        with _started_client(config) as client:
            yield client


@contextmanager
def _started_client(config: ClusterConfig) -> Iterator[Client]:
    cluster = slurm_cluster(config) if config.slurm else local_cluster(config)
    with cluster, Client(cluster) as client:
        _log_dashboard(client)
        if config.slurm:
            log.info("SLURM jobs: %s", ", ".join(slurm_job_ids(cluster)))
            wait_for_pools(client, config, config.slurm.start_timeout_s)
        yield client


def slurm_job_ids(cluster: Any) -> list[str]:
    """The SLURM job id of every job the cluster submitted."""
    return sorted(str(job.job_id) for job in cluster.workers.values())


def wait_for_pools(client: Client, config: ClusterConfig, timeout_s: float) -> None:
    """Block until every submitted job's workers joined, or until ``timeout_s`` passed and each
    pool has at least one (queued jobs start when the site lets them; the run goes on with
    those that came, and late workers join as they start)."""
    pools = pools_of(config)
    adapt = config.slurm.adapt if config.slurm else None
    expected = sum(p.n_workers * (adapt.minimum_jobs if adapt else p.jobs) for p in pools.values())
    wanted = {pool_resource(name) for name in config.pools}
    deadline = time.monotonic() + timeout_s
    while True:
        workers = list(client.scheduler_info()["workers"].values())
        have = {r for w in workers for r in w.get("resources", {})}
        if len(workers) >= expected:
            return
        if time.monotonic() > deadline:
            if workers and wanted <= have:
                log.warning("%d of %d workers started; going on", len(workers), expected)
                return
            missing = sorted(wanted - have) or ["any worker"]
            raise ConfigError(
                f"no worker of {missing} started within {timeout_s:g} s: see squeue and the job "
                "logs (cluster.slurm.log_directory), or raise cluster.slurm.start_timeout_s"
            )
        time.sleep(0.5)


def describe_workers(client: Client) -> list[str]:
    """One line per worker: its name, resources and the devices it sees."""
    devices = client.run(_visible_devices)
    lines = []
    for address, info in sorted(client.scheduler_info()["workers"].items()):
        resources = ",".join(f"{k}={v:g}" for k, v in sorted(info.get("resources", {}).items()))
        seen = devices.get(address)
        lines.append(
            f"{info.get('name')}: resources [{resources}], "
            f"{CUDA_VISIBLE_DEVICES}={'unset' if seen is None else repr(seen)}"
        )
    return lines


def local_cluster(config: ClusterConfig) -> SpecCluster:
    """Worker processes on this machine, one Nanny per worker of every pool."""
    workers = {
        spec.name: {
            "cls": Nanny,
            "options": {
                "nthreads": spec.threads,
                "memory_limit": spec.memory_limit,
                "resources": dict(spec.resources) or None,
                "env": dict(spec.env),
                "host": "127.0.0.1",
                # What LocalCluster passes its workers: no worker dashboards, quiet logs.
                "dashboard": False,
                "silence_logs": logging.WARNING,
            },
        }
        for spec in local_workers(config)
    }
    scheduler = {
        "cls": Scheduler,
        "options": {"host": "127.0.0.1", "dashboard_address": config.dashboard_address},
    }
    return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=logging.WARNING)


def slurm_cluster(config: ClusterConfig) -> Any:
    """One dask-jobqueue cluster (its scheduler on the driver) with every pool's jobs."""
    try:
        from dask_jobqueue import SLURMCluster
        from dask_jobqueue.slurm import SLURMJob
    except ImportError:
        raise ConfigError(
            "cluster.slurm needs dask-jobqueue: pip install 'laion-face-t2i[slurm]'"
        ) from None
    assert config.slurm is not None
    pools = pools_of(config)
    jobs = {
        f"{name}-{j}": _job_spec(SLURMJob, name, pool, config)
        for name, pool in pools.items()
        for j in range(pool.jobs)
    }
    first_name, first = next(iter(pools.items()))
    cluster = SLURMCluster(
        n_workers=0,
        scheduler_options={"dashboard_address": config.dashboard_address or ":0"},
        **_job_options(first_name, first, config),
    )
    adapt = config.slurm.adapt
    if adapt is not None:  # one pool (validated): its job options are the cluster's own
        cluster.adapt(minimum_jobs=adapt.minimum_jobs, maximum_jobs=adapt.maximum_jobs)
        return cluster
    # A SpecCluster starts whatever its worker_spec lists: each pool's jobs with their options.
    cluster.worker_spec.update(jobs)
    cluster.scale(jobs=len(cluster.worker_spec))
    return cluster


def _job_spec(job_cls: type, name: str, pool: PoolConfig, config: ClusterConfig) -> dict:
    spec: dict[str, Any] = {"cls": job_cls, "options": _job_options(name, pool, config)}
    spec["options"].update(config_name="slurm", protocol=None, security=None)
    if pool.n_workers > 1:  # dask worker --nworkers N names its processes NAME-0 .. NAME-(N-1)
        spec["group"] = [f"-{i}" for i in range(pool.n_workers)]
    return spec


def _job_options(name: str, pool: PoolConfig, config: ClusterConfig) -> dict[str, Any]:
    """dask-jobqueue's job arguments for one job of ``pool``."""
    site = config.slurm or SlurmConfig()
    resources = worker_resources(name, pool, bool(config.pools))
    extra_args = ["--preload", DEVICE_PRELOAD]
    if resources:
        extra_args += ["--resources", ",".join(f"{k}={v:g}" for k, v in resources.items())]
    directives = [*site.job_extra_directives, *pool.job_extra_directives]
    if pool.gpus and site.gres_gpus:
        directives.append(f"--gres=gpu:{pool.gpus}")
    memory = format_bytes(parse_bytes(pool.memory_limit) * pool.n_workers).replace(" ", "")
    return {
        "queue": pool.partition or site.partition,
        "account": site.account,
        "walltime": pool.walltime or site.walltime,
        "cores": pool.n_workers * pool.threads_per_worker,
        "memory": memory,
        "processes": pool.n_workers,
        "interface": site.interface,
        "log_directory": str(site.log_directory) if site.log_directory else None,
        "job_script_prologue": list(site.job_script_prologue),
        "job_extra_directives": directives,
        "worker_extra_args": extra_args,
        "python": site.python or sys.executable,
        "job_name": f"laionface-{name}",
    }


def _visible_devices() -> str | None:
    # A function of the worker's own module: ``os.environ.get`` would pickle the driver's
    # environment along with the bound method.
    return os.environ.get(CUDA_VISIBLE_DEVICES)


def _log_dashboard(client: Client) -> None:
    link = client.dashboard_link
    log.info("Dask dashboard: %s", link if link else "off")
