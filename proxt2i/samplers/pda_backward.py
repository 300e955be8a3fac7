"""PDA-backward sampler (ProxDM, Fang et al. NeurIPS 2025, fully implicit discretisation).

x_{k-1} = P((x_k + sqrt(gamma_k) z) / (1 - gamma_k / 2), t_{k-1}, gamma_k / (1 - gamma_k / 2)),
defined only when every gamma_k < 2; the sampler refuses other grids with a message.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict

from proxt2i.samplers.base import EpsFn, Family, GridSampler, prox, step_noise
from proxt2i.schedule import backward_lambda


def backward_step(
    eps_fn: EpsFn, x: torch.Tensor, t_prev: float, gamma: float, z: torch.Tensor
) -> torch.Tensor:
    """One PDA-backward step from x_k to x_{k-1}; raises ValueError when gamma >= 2."""
    lam = float(backward_lambda(torch.tensor(gamma)))
    y = (x + gamma**0.5 * z) / (1 - gamma / 2)
    return prox(eps_fn, y, t_prev, lam)


class PdaBackwardSampler(GridSampler):
    name = "pda_backward"
    family: ClassVar[Family] = "prox"

    def check(self, gammas: torch.Tensor) -> None:
        backward_lambda(gammas)  # refuse the whole grid before any network call

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
        return backward_step(eps_fn, x, float(t[k - 1]), float(gammas[k - 1]), z)


class PdaBackwardConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["pda_backward"] = "pda_backward"

    def build(self) -> PdaBackwardSampler:
        return PdaBackwardSampler()
