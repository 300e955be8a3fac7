"""Learning rate per training phase, with a linear warm-up at the start of a phase.

Each objective names the phase a step is in (`Objective.phase`): prox_matching has `l1` (its
L1 warm-up) then `pm` (proximal matching); eps_mse has one phase, `eps_mse`. ProxDM sets the
learning rate of every iteration from such a schedule (src/prox_diff/utils/img_exp/
engine_train.py lines 137-138 and 169-171): its latent CelebA-HQ run trains L1 at 1e-4 and
proximal matching at 2e-5 (configs/celeba_hq_vae/prox_hybrid.py lines 28-29), its score baseline
at 2e-5 after a 5000-iteration linear warm-up (configs/celeba_hq_vae/score.py lines 13-14), with
the warm-up lr * min(it, warmup) / warmup for it = 1, 2, ... (loss_lr_schedule.py lines
101-108). Here step s (0-based) is ProxDM's it = s + 1, counted from the phase's first step.

The rate is a pure function of the step, written into the optimizer before every update, so a
resumed run uses exactly the rates of an uninterrupted one (the rate saved in the optimizer's
state is overwritten at the first resumed step).
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field

from proxt2i.objectives.base import Objective


class PhaseLrConfig(BaseModel):
    """The rate of one phase and the number of its first steps that ramp up to it from 0."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    lr: float = Field(gt=0)
    warmup_steps: int = Field(default=0, ge=0)


class PhasesConfig(BaseModel):
    """Per-phase overrides of `optim.lr`; a phase left out trains at `optim.lr`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    l1: PhaseLrConfig | None = None
    pm: PhaseLrConfig | None = None
    eps_mse: PhaseLrConfig | None = None


def phase_settings(
    lr: float, warmup_steps: int, phases: PhasesConfig, name: str, start: int
) -> PhaseLrConfig:
    """The phase's own settings, else `lr`, warmed up over `warmup_steps` only when the phase
    starts the run (a later phase re-warms only if it says so)."""
    own: PhaseLrConfig | None = getattr(phases, name)
    if own is not None:
        return own
    return PhaseLrConfig(lr=lr, warmup_steps=warmup_steps if start == 0 else 0)


def learning_rate(
    objective: Objective, step: int, lr: float, warmup_steps: int, phases: PhasesConfig
) -> float:
    """The rate of update `step` (0-based) of the network that `objective` trains."""
    name, start = objective.phase(step)
    setting = phase_settings(lr, warmup_steps, phases, name, start)
    if setting.warmup_steps == 0:
        return setting.lr
    return setting.lr * min(step - start + 1, setting.warmup_steps) / setting.warmup_steps


def set_learning_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    """Write `rate` into every parameter group (accelerate's wrapper shares them)."""
    for group in optimizer.param_groups:
        group["lr"] = rate
