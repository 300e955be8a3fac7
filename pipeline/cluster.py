"""Connecting to Dask: a LocalCluster by default, an existing scheduler, or SLURM.

DESIGN.md §4: dask.distributed always; LocalCluster with worker processes (so pickling bugs
show up in tests); ``cluster.address`` to join a running scheduler; dask-jobqueue for SLURM.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from distributed import Client, LocalCluster

from pipeline.config import ClusterConfig, ConfigError, SlurmConfig

log = logging.getLogger(__name__)
# The dedup stage's dataframe shuffles make Dask log every shuffle start/stop at WARNING.
logging.getLogger("distributed.shuffle._scheduler_plugin").setLevel(logging.ERROR)


@contextmanager
def open_client(config: ClusterConfig) -> Iterator[Client]:
    """A connected client for the configured cluster; closed (and a local cluster stopped) after."""
    if config.address:
        with Client(config.address, timeout="30s") as client:
            _log_dashboard(client)
            yield client
        return
    cluster = slurm_cluster(config.slurm) if config.slurm else local_cluster(config)
    with cluster, Client(cluster) as client:
        _log_dashboard(client)
        yield client


def local_cluster(config: ClusterConfig) -> LocalCluster:
    return LocalCluster(
        n_workers=config.n_workers,
        threads_per_worker=config.threads_per_worker,
        processes=True,
        memory_limit=config.memory_limit,
        dashboard_address=config.dashboard_address,
        resources=dict(config.resources) or None,
    )


def slurm_cluster(config: SlurmConfig) -> Any:
    """A dask-jobqueue SLURMCluster scaled to ``config.jobs`` jobs."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ConfigError(
            "cluster.slurm needs dask-jobqueue: pip install 'laion-face-t2i[slurm]'"
        ) from None
    resources = " ".join(f"--resources {k}={v}" for k, v in config.worker_resources.items())
    cluster = SLURMCluster(
        queue=config.queue,
        account=config.account,
        cores=config.cores,
        memory=config.memory,
        processes=config.processes,
        walltime=config.walltime,
        job_extra_directives=config.job_extra_directives,
        worker_extra_args=resources.split() if resources else [],
    )
    cluster.scale(jobs=config.jobs)
    return cluster


def _log_dashboard(client: Client) -> None:
    link = client.dashboard_link
    log.info("Dask dashboard: %s", link if link else "off")
