"""The training config: one YAML file, validated at load (extra keys fail with their name)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from proxt2i.lr_schedule import PhasesConfig
from proxt2i.model import BackboneConfig
from proxt2i.objectives.eps_mse import EpsMseConfig
from proxt2i.objectives.prox_matching import ProxMatchingConfig
from proxt2i.text import HfTextConfig, MiniLmConfig, OpenClipTextConfig

TextEncoderConfig = Annotated[
    MiniLmConfig | OpenClipTextConfig | HfTextConfig, Field(discriminator="type")
]
ObjectiveConfig = Annotated[ProxMatchingConfig | EpsMseConfig, Field(discriminator="type")]
M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config or path the user must fix; the message says what."""


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


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """Apply `a.b.0.c=value` in place; the value is parsed as YAML (numbers, lists, bools)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {assignment!r} must look like key.sub=value")
    node: Any = tree
    parts = key.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    value = yaml.safe_load(raw)
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def read_tree(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The YAML mapping at `path` with `key.sub=value` overrides applied."""
    if not Path(path).is_file():
        raise ConfigError(f"config file not found: {path}")
    tree = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    if isinstance(tree.get("objectives"), list):
        tree["objectives"] = [dict(o) for o in tree["objectives"]]
    for assignment in overrides:
        apply_override(tree, assignment)
    return tree


def load_config(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read, override and validate; any problem is a one-line ConfigError."""
    return validate_tree(read_tree(path, overrides), str(path))


def validate_as(model: type[M], tree: dict[str, Any], source: str) -> M:
    """Validate a tree as `model`; the first error becomes `source: dotted.key: message`."""
    try:
        return model.model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{source}: {where}: {err['msg']}") from None


def validate_tree(tree: dict[str, Any], source: str) -> TrainConfig:
    return validate_as(TrainConfig, tree, source)


def dump_config(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
