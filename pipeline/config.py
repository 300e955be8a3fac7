"""The run configuration: one YAML file, validated at load (DESIGN.md §8).

Top level: ``run_dir``, ``stages`` (registry keys, in pipeline order), ``cluster``, ``runner``,
then one section per registered stage, named by its registry key. Every model forbids unknown
keys, so a typo fails before any compute with the offending key in a one-line message.
Overrides ``--set section.key=value`` are applied to the YAML before validation; values are
parsed as YAML (``5``, ``true``, ``[a, b]``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from manifests.model_paths import SKIP_MODEL_PATHS
from stages import STAGES


class ConfigError(ValueError):
    """A configuration problem; its message is one line that says what to fix."""


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SlurmConfig(StrictModel):
    """dask-jobqueue SLURMCluster arguments (the route to many machines)."""

    queue: str | None = None
    account: str | None = None
    cores: int = Field(8, ge=1, description="cores per job")
    memory: str = Field("32GiB", description="memory per job")
    processes: int = Field(4, ge=1, description="Dask worker processes per job")
    jobs: int = Field(1, ge=1, description="jobs to start")
    walltime: str = "04:00:00"
    job_extra_directives: list[str] = Field(default_factory=list, description="e.g. --gres=gpu:1")
    worker_resources: dict[str, float] = Field(default_factory=dict, description="e.g. GPU: 1")


class ClusterConfig(StrictModel):
    """Where tasks run: a LocalCluster (default), an existing scheduler, or SLURM."""

    address: str | None = Field(None, description="join this scheduler, e.g. tcp://host:8786")
    slurm: SlurmConfig | None = None
    n_workers: int = Field(2, ge=1, description="LocalCluster worker processes")
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = Field("4GiB", description="per LocalCluster worker")
    dashboard_address: str | None = Field(":0", description="':0' picks a free port; null: off")
    resources: dict[str, float] = Field(
        default_factory=dict, description="LocalCluster worker resources, e.g. {GPU: 1}"
    )


class RunnerConfig(StrictModel):
    """How shards are scheduled and what happens when one fails."""

    retries: int = Field(2, ge=0, description="extra tries of a failing shard task")
    on_shard_error: Literal["fail", "skip"] = Field(
        "fail", description="fail: stop the run; skip: list the shard and go on"
    )
    progress: bool = Field(True, description="driver-side progress bars")


class RunConfigBase(StrictModel):
    """The fixed part of a run config; stage sections are added from the STAGES registry."""

    run_dir: Path
    stages: list[str] = Field(default_factory=lambda: list(STAGES))
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)  # type: ignore[arg-type]
    runner: RunnerConfig = Field(default_factory=RunnerConfig)  # type: ignore[arg-type]

    @field_validator("stages")
    @classmethod
    def _known_stages(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; registered: {list(STAGES)}")
        order = list(STAGES)
        return sorted(dict.fromkeys(value), key=order.index)

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


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to raw config data (a new dict)."""
    out: dict[str, Any] = yaml.safe_load(yaml.safe_dump(data)) or {}
    for item in overrides:
        dotted, sep, raw = item.partition("=")
        if not sep or not dotted:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        *parents, leaf = dotted.split(".")
        node = out
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
            node = child
        node[leaf] = yaml.safe_load(raw)
    return out


def format_validation_error(
    err: ValidationError, source: str, data: Mapping[str, Any] | None = None
) -> str:
    """One line naming each offending key and what is wrong with it.

    With the validated ``data``, keys are spelled as in the YAML: pydantic puts the chosen
    member's tag of a discriminated union in the error location (``detector.insightface.
    model_root``), which is not a key the user can set.
    """
    parts = []
    for e in err.errors():
        key = ".".join(_yaml_key(e["loc"], data)) or "<top>"
        if e["type"] == "extra_forbidden":
            parts.append(f"{key}: unknown key")
        elif e["type"] == "missing":
            parts.append(f"{key}: required key is missing")
        elif e["type"] == "value_error":  # our validators already name the bad value
            parts.append(f"{key}: {e['msg'].removeprefix('Value error, ')}")
        else:
            parts.append(f"{key}: {e['msg']} (got {short_repr(e.get('input'))})")
    return f"config error in {source}: " + "; ".join(parts)


def validate_config(
    data: Mapping[str, Any], source: str = "<config>", check_model_paths: bool = True
) -> RunConfigBase:
    """Validate raw config data; any problem raises ConfigError with a one-line message.

    ``check_model_paths=False`` is for work that never loads a model (re-deciding from stored
    scores): the configured model paths need not exist on this machine.
    """
    context = None if check_model_paths else SKIP_MODEL_PATHS
    try:
        return run_config_model().model_validate(dict(data), context=context)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, data)) from None


def load_config(path: Path | str, overrides: Sequence[str] = ()) -> RunConfigBase:
    """Read, override and validate a YAML run config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config error in {path}: not valid YAML ({_first_line(err)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config error in {path}: the top level must be a mapping")
    return validate_config(apply_overrides(data, overrides), str(path))


def _yaml_key(loc: tuple[int | str, ...], data: Mapping[str, Any] | None) -> list[str]:
    """``loc`` without the tags of discriminated unions (our unions discriminate on ``type``)."""
    parts: list[str] = []
    node: Any = data
    for part in loc:
        if isinstance(node, Mapping) and part not in node and node.get("type") == part:
            continue
        parts.append(str(part))
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return parts


def short_repr(value: object, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters, for one-line messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(err: Exception) -> str:
    return " ".join(str(err).split())
