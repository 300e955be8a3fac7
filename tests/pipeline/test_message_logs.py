"""Dask's developer logs stay at ``cluster.message_log_length`` on a cluster the run starts.

The scheduler keeps the recent messages of every worker's connection: at Dask's default of
1000 that is tens of MiB on a long run (the driver, which hosts a LocalCluster's or a SLURM
cluster's scheduler, grew ~28 MiB over its first 500 two-row shards, then stayed flat;
docs/many-machines.md).
"""

from __future__ import annotations

import dask
from distributed import Worker

from pipeline.cluster import MESSAGE_LOG_LENGTH, open_client
from pipeline.config import ClusterConfig

LENGTH = 7
TASKS = 40  # each makes several transitions and messages: far more than LENGTH


def _worker_stream_log(dask_worker: Worker) -> tuple[int | None, int]:
    log = dask_worker.batched_stream.recent_message_log
    return log.maxlen, len(log)


def test_a_started_cluster_keeps_message_log_length_messages_per_log() -> None:
    config = ClusterConfig(
        n_workers=1, dashboard_address=None, memory_limit="1GiB", message_log_length=LENGTH
    )
    before = dask.config.get(MESSAGE_LOG_LENGTH)
    with open_client(config) as client:
        futures = client.map(abs, range(-TASKS, 0), pure=False)
        assert client.gather(futures) == list(range(TASKS, 0, -1))
        scheduler = client.cluster.scheduler
        assert (scheduler.transition_log.maxlen, len(scheduler.transition_log)) == (LENGTH, LENGTH)
        streams = {a: (s.recent_message_log.maxlen, len(s.recent_message_log))
                   for a, s in scheduler.stream_comms.items()}  # fmt: skip
        (worker,) = scheduler.workers
        assert streams == {worker: (LENGTH, LENGTH)}
        assert client.run(_worker_stream_log) == {worker: (LENGTH, LENGTH)}
    # The setting is the cluster's, not the caller's process-wide Dask config.
    assert dask.config.get(MESSAGE_LOG_LENGTH) == before
