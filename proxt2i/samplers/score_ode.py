"""Score baseline: Euler on the probability-flow ODE of the VP SDE (Song et al., ICLR 2021).

x_{k-1} = x_k + gamma_k / 2 (x_k + s(x_k, t_k)) for k = N..2, then Tweedie denoising at t_1
(N network calls in total, like the proximal samplers).
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
)
from proxt2i.schedule import VPSchedule


def probability_flow_step(
    schedule: VPSchedule, eps_fn: EpsFn, x: torch.Tensor, t: float, gamma: float
) -> torch.Tensor:
    """One Euler step of dx/dt = -beta/2 (x + grad log p_t) backwards from t_k to t_{k-1}."""
    eps = eps_fn(x, batch_scalar(t, x), batch_scalar(SCORE_LAMBDA, x))
    return x + 0.5 * gamma * (x + score_from_eps(schedule, eps, t))


class ScoreOdeSampler(GridSampler):
    """Deterministic given the initial noise: the generator is not used."""

    name = "score_ode"
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
        return probability_flow_step(self.schedule, eps_fn, x, float(t[k]), float(gammas[k - 1]))


class ScoreOdeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["score_ode"] = "score_ode"

    def build(self) -> ScoreOdeSampler:
        return ScoreOdeSampler()
