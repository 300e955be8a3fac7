"""Pipeline stages. ``STAGES`` maps each registry key, in pipeline order, to its config model.

A stage's config model is the section of the run config named by its key; ``build()`` returns
the ``Stage``. Registering a stage here is all it takes: the config, the runner, the CLI and
the contract tests pick it up from this dict.
"""

from pydantic import BaseModel

from stages.base import RunContext, Stage
from stages.candidates import CandidatesConfig
from stages.caption import CaptionStageConfig
from stages.dedup import DedupConfig
from stages.download import DownloadConfig
from stages.filter import filter_stage_config
from stages.shard.stage import ShardConfig

STAGES: dict[str, type[BaseModel]] = {
    "candidates": CandidatesConfig,
    "download": DownloadConfig,
    "filter": filter_stage_config(),
    "dedup": DedupConfig,
    "caption": CaptionStageConfig,
    "shard": ShardConfig,
}


def build_stage(name: str, config: BaseModel) -> Stage:
    """The stage registered as ``name``, configured by its section ``config``."""
    stage: Stage = config.build()  # type: ignore[attr-defined]
    if stage.name != name:
        raise ValueError(f"STAGES[{name!r}] builds a stage named {stage.name!r}")
    return stage


__all__ = ["STAGES", "RunContext", "Stage", "build_stage"]
