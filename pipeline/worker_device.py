"""Worker preload (``dask worker --preload pipeline.worker_device``): one device per worker.

A SLURM job of a GPU pool runs ``dask worker --nworkers G`` with G GPUs, and SLURM exports all
G in ``CUDA_VISIBLE_DEVICES`` to every process. Before any task (and so before any CUDA
context) this narrows each worker to the one device its slot names: the worker ``NAME-i`` of
the job keeps the i-th visible id. A worker of a pool without GPUs sees none. Local pools set
the variable per process instead (``pipeline.pools.local_workers``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from pipeline.pools import CUDA_VISIBLE_DEVICES, GPU, HIDE_GPUS

log = logging.getLogger(__name__)


def pinned_devices(name: str, resources: Mapping[str, float], visible: str | None) -> str | None:
    """The ``CUDA_VISIBLE_DEVICES`` worker ``name`` should have, or None to leave it alone."""
    pooled = any(k.startswith("pool-") for k in resources)
    if not resources.get(GPU):
        return HIDE_GPUS if pooled else None
    ids = [d for d in (visible or "").split(",") if d.strip()]
    if len(ids) <= 1:
        return None
    stem, _, slot = name.rpartition("-")
    if not stem or not slot.isdigit() or int(slot) >= len(ids):
        raise RuntimeError(
            f"worker {name!r} sees GPUs {ids} but its name has no slot below {len(ids)}"
        )
    return ids[int(slot)]


def dask_setup(worker: object) -> None:
    """Distributed's preload hook: pin this worker's process before it runs anything."""
    resources = dict(getattr(worker.state, "total_resources", {}))  # type: ignore[attr-defined]
    name = str(getattr(worker, "name", ""))
    pinned = pinned_devices(name, resources, os.environ.get(CUDA_VISIBLE_DEVICES))
    if pinned is not None:
        os.environ[CUDA_VISIBLE_DEVICES] = pinned
        log.info("worker %s: %s=%r", name, CUDA_VISIBLE_DEVICES, pinned)
