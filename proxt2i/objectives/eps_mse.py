"""Score baseline objective: eps-MSE (DDPM, Ho et al. 2020) on the same VP SDE.

t is uniform on [t_min, 1] (Song et al. 2021 use t_min = 1e-3), x_t = sqrt(alpha_t) x0 +
sqrt(1 - alpha_t) n, loss = mean ||eps_hat(x_t, t) - n||^2. The backbone is the proximal one; its
lambda input is held at the constant SCORE_LAMBDA.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from proxt2i.objectives.base import EpsNet, per_sample
from proxt2i.samplers.base import SCORE_LAMBDA, Family
from proxt2i.schedule import VPSchedule


class EpsMseObjective:
    name = "eps_mse"
    family: Family = "score"

    def __init__(self, cfg: EpsMseConfig) -> None:
        self.cfg = cfg
        self.schedule = VPSchedule()

    def phase(self, step: int) -> tuple[str, int]:
        """One learning-rate phase for the whole run."""
        return "eps_mse", 0

    def loss(self, net: EpsNet, x0: torch.Tensor, step: int) -> torch.Tensor:
        del step  # no schedule on this loss
        b = x0.shape[0]
        t64 = self.cfg.t_min + (1 - self.cfg.t_min) * torch.rand(b, dtype=torch.float64)
        noise = torch.randn_like(x0)
        x_t = self.schedule.add_noise(x0, noise, t64)
        lam = torch.full((b,), SCORE_LAMBDA, dtype=x0.dtype, device=x0.device)
        return per_sample((net(x_t, t64.to(x0), lam) - noise) ** 2).mean()


class EpsMseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["eps_mse"] = "eps_mse"
    t_min: float = Field(default=1e-3, gt=0, lt=1)

    def build(self) -> EpsMseObjective:
        return EpsMseObjective(self)
