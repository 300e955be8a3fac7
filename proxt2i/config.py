"""The training config: one YAML file, validated at load (extra keys fail with their name)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

# One --set grammar and one error style for every laionface subcommand (manifests/overrides.py);
# proxt2i's modules keep importing ConfigError and validate_as from here.
from manifests.overrides import ConfigError as ConfigError
from manifests.overrides import apply_overrides, read_config_file
from manifests.overrides import validate_as as validate_as
from proxt2i.lr_schedule import PhasesConfig
from proxt2i.model import BackboneConfig
from proxt2i.objectives import ObjectiveConfig
from proxt2i.objectives.prox_matching import ProxMatchingConfig
from proxt2i.text import MiniLmConfig, TextEncoderConfig


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    shards: str  # brace-expandable tar URL(s), e.g. RUN/shards/{00000..00099}.tar
    resolution: int = Field(default=16, ge=8)
    batch_size: int = Field(default=8, ge=1)
    caption_dropout: float = Field(default=0.1, ge=0, le=1)  # for classifier-free guidance
    shuffle_buffer: int = Field(default=256, ge=0)
    num_workers: int = Field(default=0, ge=0)
    caption: Literal["long", "short", "mixed"] = Field(
        default="long", description="which caption a sample trains with (proxt2i.corpus)"
    )
    short_probability: float = Field(default=0.3, ge=0, le=1, description="for caption: mixed")
    hands_subset_ratio: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of samples drawn from the hand-focused subset (the hands_subset tag); "
        "0: the corpus as published (proxt2i.corpus.corpus_stream)",
    )


class OptimConfig(BaseModel):
    """AdamW settings; the learning rate per phase (proxt2i/lr_schedule.py): `phases.l1`,
    `phases.pm`, `phases.eps_mse` override `lr`; `warmup_steps` ramps `lr` up linearly over
    the first steps of the run."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    lr: float = Field(default=3e-4, gt=0)
    warmup_steps: int = Field(default=0, ge=0)
    phases: PhasesConfig = PhasesConfig()
    weight_decay: float = Field(default=0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = Field(default=1.0, gt=0)
    ema_decay: float = Field(default=0.999, ge=0, lt=1)


class TrainConfig(BaseModel):
    """Everything a run needs; saved resolved beside every checkpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    out_dir: Path
    steps: int = Field(ge=1)
    save_every: int = Field(default=1000, ge=1)
    log_every: int = Field(default=50, ge=1)
    seed: int = 0
    data: DataConfig
    text_encoder: TextEncoderConfig = MiniLmConfig()
    backbone: BackboneConfig = BackboneConfig()
    objectives: tuple[ObjectiveConfig, ...] = (ProxMatchingConfig(),)
    optim: OptimConfig = OptimConfig()
    vae_path: Path | None = None  # diffusers AutoencoderKL dir: train in its latent space
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # applied on GPU only
    compile: bool = False  # torch.compile, applied on GPU only

    @model_validator(mode="after")
    def _one_objective_per_family(self) -> TrainConfig:
        kinds = [o.type for o in self.objectives]
        if not kinds or len(set(kinds)) != len(kinds):
            raise ValueError(f"objectives must be non-empty and distinct, got {kinds}")
        return self


def read_tree(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The YAML mapping at `path` with `key.sub=value` overrides applied."""
    tree = read_config_file(path)
    if isinstance(tree.get("objectives"), list):  # one dict each, though YAML aliases share one
        tree["objectives"] = [dict(o) if isinstance(o, dict) else o for o in tree["objectives"]]
    return apply_overrides(tree, overrides)


def load_config(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read, override and validate; any problem is a one-line ConfigError."""
    return validate_tree(read_tree(path, overrides), str(path))


def validate_tree(tree: dict[str, Any], source: str) -> TrainConfig:
    return validate_as(TrainConfig, tree, source)


def dump_config(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
