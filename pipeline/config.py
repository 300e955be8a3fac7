"""The run configuration: one YAML file, validated at load (DESIGN.md §8).

Top level: ``run_dir``, ``stages`` (registry keys, in pipeline order), ``cluster``, ``runner``,
then one section per registered stage, named by its registry key. Every model forbids unknown
keys, so a typo fails before any compute with the offending key in a one-line message.
Overrides ``--set section.key=value`` are applied to the YAML before validation; values are
parsed as YAML (``5``, ``true``, ``[a, b]``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    create_model,
    field_validator,
    model_validator,
)

from manifests.model_paths import SKIP_MODEL_PATHS

# The --set grammar and the one-line errors are shared with proxt2i's configs (which may not
# import this package, DESIGN.md §2); the pipeline's modules keep importing them from here.
from manifests.overrides import ConfigError as ConfigError
from manifests.overrides import apply_overrides as apply_overrides
from manifests.overrides import read_config_file, validate_as
from manifests.overrides import short_repr as short_repr
from stages import STAGES


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AdaptConfig(StrictModel):
    """Adaptive scaling bounds of the SLURM route, in jobs (dask-jobqueue's ``adapt``)."""

    minimum_jobs: int = Field(
        default=1, ge=1, description="always running (the run waits for their workers)"
    )
    maximum_jobs: int = Field(ge=1, description="at most this many while tasks queue")

    @model_validator(mode="after")
    def _ordered(self) -> AdaptConfig:
        if self.maximum_jobs < self.minimum_jobs:
            raise ValueError(f"maximum_jobs {self.maximum_jobs} < minimum_jobs {self.minimum_jobs}")
        return self


class SlurmConfig(StrictModel):
    """Site settings of the SLURM route (dask-jobqueue): what every job of every pool shares.

    Each pool of ``cluster.pools`` (or the single default pool) becomes ``jobs`` SLURM jobs of
    ``workers`` worker processes; a job asks for ``workers x threads_per_worker`` cores and
    ``workers x memory_limit`` memory, and a GPU pool's job for its ``gpus``.
    """

    partition: str | None = Field(
        default=None, description="sbatch --partition (a pool may override)"
    )
    account: str | None = Field(default=None, description="sbatch --account")
    walltime: str = Field(default="04:00:00", description="sbatch --time (a pool may override)")
    interface: str | None = Field(
        default=None,
        description="network interface of the scheduler and workers, e.g. ib0; lo on one node",
    )
    log_directory: Path | None = Field(default=None, description="where the job logs go")
    job_script_prologue: list[str] = Field(
        default_factory=list, description="shell lines before the worker starts, e.g. module load"
    )
    job_extra_directives: list[str] = Field(
        default_factory=list, description="extra #SBATCH lines for every job, e.g. --qos=high"
    )
    python: str | None = Field(
        default=None, description="the workers' python; default: the driver's (a shared venv)"
    )
    start_timeout_s: float = Field(
        default=600,
        gt=0,
        description="how long to wait for every job's workers; after it, the run starts with "
        "those that came if each pool has one",
    )
    adapt: AdaptConfig | None = Field(
        default=None,
        description="scale the jobs with the queue between bounds (one pool only: dask's "
        "adaptive scaling cannot tell one pool's jobs from another's); null: each pool's jobs",
    )
    gres_gpus: bool = Field(
        default=True,
        description="a GPU pool's jobs ask for --gres=gpu:N; false where GPUs are implicit",
    )


POOL_NAME = r"^[a-z][a-z0-9_]*$"


class PoolConfig(StrictModel):
    """One group of identical workers and the stages whose tasks run on it (DESIGN.md §4).

    A pool with ``gpus`` runs one worker per GPU, each pinned to its own device
    (``CUDA_VISIBLE_DEVICES``); the other pools' workers see no GPU at all.
    """

    stages: list[str] = Field(min_length=1, description="stages whose tasks run on this pool")
    workers: int | None = Field(
        default=None, ge=1, description="worker processes (per SLURM job); a GPU pool: one per GPU"
    )
    threads_per_worker: int = Field(default=1, ge=1, description="tasks at once per worker")
    memory_limit: str = Field(default="4GiB", description="per worker")
    gpus: int = Field(
        default=0, ge=0, description="GPUs per node (SLURM: per job); one worker each"
    )
    devices: list[int] | None = Field(
        default=None, description="LocalCluster: the GPU ids to use (default: 0..gpus-1)"
    )
    jobs: int = Field(default=1, ge=1, description="SLURM: jobs of this pool")
    partition: str | None = Field(default=None, description="SLURM: this pool's partition")
    walltime: str | None = Field(default=None, description="SLURM: this pool's walltime")
    job_extra_directives: list[str] = Field(
        default_factory=list, description="SLURM: extra #SBATCH lines of this pool's jobs"
    )
    resources: dict[str, float] = Field(
        default_factory=dict, description="extra Dask resources of each worker"
    )

    @model_validator(mode="after")
    def _workers_follow_gpus(self) -> PoolConfig:
        if self.devices is not None and len(self.devices) != self.gpus:
            raise ValueError(f"devices {self.devices} must list exactly gpus={self.gpus} ids")
        if self.gpus and self.workers not in (None, self.gpus):
            raise ValueError(f"a GPU pool runs one worker per GPU: drop workers or set {self.gpus}")
        return self

    @property
    def n_workers(self) -> int:
        return self.gpus or self.workers or 1


class ClusterConfig(StrictModel):
    """Where tasks run: a LocalCluster (default), an existing scheduler, or SLURM.

    Without ``pools`` every worker runs every stage (``n_workers`` x ``threads_per_worker``);
    with ``pools`` each stage runs only on its pool's workers, on a LocalCluster and on SLURM
    alike, and on an existing scheduler whose workers were started with the pools' resources.
    """

    address: str | None = Field(
        default=None, description="join this scheduler, e.g. tcp://host:8786"
    )
    slurm: SlurmConfig | None = None
    pools: dict[str, PoolConfig] = Field(
        default_factory=dict, description="named worker pools, e.g. cpu and gpu"
    )
    n_workers: int = Field(default=2, ge=1, description="worker processes when there are no pools")
    threads_per_worker: int = Field(default=1, ge=1)
    memory_limit: str = Field(default="4GiB", description="per worker when there are no pools")
    dashboard_address: str | None = Field(
        default=":0", description="':0' picks a free port; null: off"
    )
    resources: dict[str, float] = Field(
        default_factory=dict, description="worker resources when there are no pools, e.g. {GPU: 1}"
    )
    message_log_length: int = Field(
        default=100,
        ge=0,
        description="recent messages and events Dask keeps per connection and per log, for "
        "debugging (distributed.admin.low-level-log-length; Dask's default 1000): the scheduler "
        "keeps one such log per worker; at 1000 a 2-worker run's driver held ~20 MiB more",
    )

    @model_validator(mode="after")
    def _adapt_one_pool(self) -> ClusterConfig:
        if self.slurm and self.slurm.adapt and len(self.pools) > 1:
            raise ValueError(
                "cluster.slurm.adapt scales one pool; with several, set each pool's jobs instead"
            )
        return self

    @field_validator("pools")
    @classmethod
    def _pool_names(cls, pools: dict[str, PoolConfig]) -> dict[str, PoolConfig]:
        bad = [name for name in pools if not re.match(POOL_NAME, name)]
        if bad:
            raise ValueError(f"pool names {bad} must match {POOL_NAME} (they name Dask resources)")
        return pools


class RunnerConfig(StrictModel):
    """How shards are scheduled and what happens when one fails."""

    retries: int = Field(2, ge=0, description="extra tries of a failing shard task")
    on_shard_error: Literal["fail", "skip"] = Field(
        "fail", description="fail: stop the run; skip: list the shard and go on"
    )
    progress: bool = Field(True, description="driver-side progress bars")
    shards_in_flight: int | None = Field(
        None,
        ge=1,
        description="shards with tasks on the cluster at once (each shard's chain of stages "
        "up to the next barrier): bounds what the driver and scheduler hold on a run of many "
        "shards; null: 4 per worker thread the cluster has, at least 8",
    )


class RunConfigBase(StrictModel):
    """The fixed part of a run config; stage sections are added from the STAGES registry."""

    run_dir: Path
    stages: list[str] = Field(default_factory=lambda: list(STAGES))
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    runner: RunnerConfig = Field(default_factory=RunnerConfig)  # type: ignore[arg-type]

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; registered: {list(STAGES)}")
        order = list(STAGES)
        return sorted(dict.fromkeys(value), key=order.index)

    @model_validator(mode="after")
    def _every_stage_has_one_pool(self) -> RunConfigBase:
        pools = self.cluster.pools
        if not pools:
            return self
        where: dict[str, list[str]] = {}
        for pool_name, pool in pools.items():
            for stage in pool.stages:
                where.setdefault(stage, []).append(pool_name)
        unknown = sorted(set(where) - set(STAGES))
        if unknown:
            raise ValueError(f"cluster.pools name unknown stage(s) {unknown}")
        twice = {s: p for s, p in where.items() if len(p) > 1}
        if twice:
            raise ValueError(f"cluster.pools: each stage runs on one pool; {twice}")
        missing = [s for s in self.stages if s not in where]
        if missing:
            raise ValueError(f"cluster.pools: stage(s) {missing} are on no pool; add them to one")
        return self

    def stage_config(self, name: str) -> BaseModel:
        """The validated section of stage ``name``."""
        section: BaseModel = getattr(self, name)
        return section


@functools.cache
def run_config_model() -> type[RunConfigBase]:
    """RunConfigBase plus one optional section per registered stage (default: its defaults)."""
    fields: dict[str, Any] = {
        name: (model, Field(default_factory=model)) for name, model in STAGES.items()
    }
    return create_model("RunConfig", __base__=RunConfigBase, **fields)


def validate_config(
    data: Mapping[str, Any], source: str = "<config>", check_model_paths: bool = True
) -> RunConfigBase:
    """Validate raw config data; any problem raises ConfigError with a one-line message.

    ``check_model_paths=False`` is for work that never loads a model (re-deciding from stored
    scores): the configured model paths need not exist on this machine.
    """
    context = None if check_model_paths else SKIP_MODEL_PATHS
    return validate_as(run_config_model(), data, source, context)


def load_config(path: Path | str, overrides: Sequence[str] = ()) -> RunConfigBase:
    """Read, override and validate a YAML run config."""
    return validate_config(apply_overrides(read_config_file(path), overrides), str(path))
