"""Score baseline: Euler-Maruyama on the reverse VP SDE (Song et al., ICLR 2021).

x_{k-1} = x_k + gamma_k (x_k / 2 + s(x_k, t_k)) + sqrt(gamma_k) z for k = N..2, then a final
Tweedie denoising step at t_1, so N steps cost N network calls like the proximal samplers.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict

from proxt2i.samplers.base import (
    SCORE_LAMBDA,
    EpsFn,
    Family,
    GridSampler,
    batch_scalar,
    score_from_eps,
    step_noise,
)
from proxt2i.schedule import VPSchedule


def euler_maruyama_step(
    schedule: VPSchedule, eps_fn: EpsFn, x: torch.Tensor, t: float, gamma: float, z: torch.Tensor
) -> torch.Tensor:
    """One reverse-SDE Euler-Maruyama step from t_k to t_{k-1} (beta dt replaced by gamma_k)."""
    eps = eps_fn(x, batch_scalar(t, x), batch_scalar(SCORE_LAMBDA, x))
    score = score_from_eps(schedule, eps, t)
    return x + gamma * (0.5 * x + score) + gamma**0.5 * z


class ScoreSdeSampler(GridSampler):
    name = "score_sde"
    family: ClassVar[Family] = "score"

    def step(
        self,
        eps_fn: EpsFn,
        x: torch.Tensor,
        k: int,
        grid: tuple[torch.Tensor, torch.Tensor],
        generator: torch.Generator,
    ) -> torch.Tensor:
        t, gammas = grid
        z = step_noise(x, generator)
        return euler_maruyama_step(self.schedule, eps_fn, x, float(t[k]), float(gammas[k - 1]), z)


class ScoreSdeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["score_sde"] = "score_sde"

    def build(self) -> ScoreSdeSampler:
        return ScoreSdeSampler()
