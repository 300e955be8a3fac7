"""PDA-hybrid sampler (ProxDM, Fang et al. NeurIPS 2025, hybrid discretisation of the reverse SDE).

x_{k-1} = P((1 + gamma_k / 2) x_k + sqrt(gamma_k) z, t_{k-1}, gamma_k): the drift -x/2 is taken
explicitly, the score term implicitly through the proximal operator.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict

from proxt2i.samplers.base import EpsFn, Family, GridSampler, prox, step_noise
from proxt2i.schedule import hybrid_lambda


def hybrid_pre_prox(x: torch.Tensor, gamma: float, z: torch.Tensor) -> torch.Tensor:
    """The pre-proximal variable y_k = (1 + gamma_k / 2) x_k + sqrt(gamma_k) z."""
    return (1 + gamma / 2) * x + gamma**0.5 * z


def hybrid_step(
    eps_fn: EpsFn, x: torch.Tensor, t_prev: float, gamma: float, z: torch.Tensor
) -> torch.Tensor:
    """One PDA-hybrid step from x_k to x_{k-1}."""
    lam = float(hybrid_lambda(torch.tensor(gamma)))
    return prox(eps_fn, hybrid_pre_prox(x, gamma, z), t_prev, lam)


class PdaHybridSampler(GridSampler):
    name = "pda_hybrid"
    family: ClassVar[Family] = "prox"

    def step(
        self,
        eps_fn: EpsFn,
        x: torch.Tensor,
        k: int,
        grid: tuple[torch.Tensor, torch.Tensor],
        generator: torch.Generator,
    ) -> torch.Tensor:
        t, gammas = grid
        return hybrid_step(
            eps_fn, x, float(t[k - 1]), float(gammas[k - 1]), step_noise(x, generator)
        )


class PdaHybridConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["pda_hybrid"] = "pda_hybrid"

    def build(self) -> PdaHybridSampler:
        return PdaHybridSampler()
