"""The fine-tuning config (`laionface finetune CKPT CONFIG`): one YAML file, validated at load.

The checkpoint brings the network, its text encoder and model space and what it was trained
for; this file brings the run: prompts, reward, GRPO settings, optimizer, EMA, run layout.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from proxt2i.config import read_tree, validate_as
from proxt2i.grpo import GrpoConfig
from proxt2i.rewards import RewardConfig


class FinetuneOptimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lr: float = Field(default=1e-5, gt=0)  # every weight of a trained network moves: keep it small
    weight_decay: float = Field(default=0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = Field(default=1.0, gt=0)
    ema_decay: float = Field(default=0.99, ge=0, lt=1)  # the EMA weights are what sampling uses


class FinetuneConfig(BaseModel):
    """Everything a GRPO run needs besides the checkpoint; saved in every fine-tuned one."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    out_dir: Path
    iterations: int = Field(ge=1)
    save_every: int = Field(default=50, ge=1)
    eval_every: int = Field(default=10, ge=1)  # held-out reward every this many iterations
    seed: int = 0
    prompts: Path  # training prompts, one per line
    heldout_prompts: Path  # the reported reward's prompts; must not overlap `prompts`
    reward: RewardConfig
    grpo: GrpoConfig = GrpoConfig()
    optim: FinetuneOptimConfig = FinetuneOptimConfig()


def load_finetune_config(path: Path, overrides: list[str] | tuple[str, ...] = ()) -> FinetuneConfig:
    """Read, override (`--set grpo.steps=5`) and validate; problems are one-line ConfigErrors."""
    return validate_as(FinetuneConfig, read_tree(path, overrides), str(path))
