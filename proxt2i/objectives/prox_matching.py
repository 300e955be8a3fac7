"""Proximal matching objective (ProxDM, Fang et al. NeurIPS 2025, Eq. 7-8).

Training pairs: draw N from the step counts the sampler will use (weights log10 N, as in the
ProxDM public code), k uniform in 1..N, t = t_{k-1} = (k-1)/N and the lambda the sampler uses
there; x_t = sqrt(alpha_t) x0 + sqrt(1 - alpha_t) n, y = x_t + sqrt(lambda) xi, target x_t.
The loss is taken on eps (ProxDM's "loss balancing": x_hat - x_t = sqrt(lambda)(eps_hat - xi), so
dividing by sqrt(lambda) makes every lambda count alike):
    l1 warm-up:        mean |eps_hat - xi|
    proximal matching: 1 - exp(-||eps_hat - xi||^2 / (d zeta^2)), zeta halved at set steps.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from proxt2i.objectives.base import EpsNet, broadcast, per_sample
from proxt2i.samplers.base import Family
from proxt2i.schedule import VPSchedule, backward_lambda, hybrid_lambda


def proximal_matching_loss(pred: torch.Tensor, target: torch.Tensor, zeta: float) -> torch.Tensor:
    """Per-sample 1 - exp(-||pred - target||^2 / (d zeta^2)); ~ MSE / zeta^2 as zeta grows."""
    mse = per_sample((pred - target) ** 2)
    return 1 - torch.exp(-mse / zeta**2)


def draw_grid_times(
    step_counts: tuple[int, ...], batch: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(t_{k-1}, gamma_k) for random N (weights log10 N) and k uniform in 1..N; float64, CPU."""
    counts = torch.tensor(step_counts, dtype=torch.float64)
    weights = torch.log10(counts).clamp_min(1e-3)
    n = counts[torch.multinomial(weights, batch, replacement=True, generator=generator)]
    k = torch.floor(torch.rand(batch, generator=generator, dtype=torch.float64) * n) + 1
    t_prev, t_now = (k - 1) / n, k / n
    return t_prev, VPSchedule().beta_integral(t_prev, t_now)


class ProxMatchingObjective:
    name = "prox_matching"
    family: Family = "prox"

    def __init__(self, cfg: ProxMatchingConfig) -> None:
        self.cfg = cfg
        self.schedule = VPSchedule()

    def zeta(self, step: int) -> float:
        """zeta_init halved at every milestone already passed (ProxDM: decay 0.5 in stages)."""
        passed = sum(1 for m in self.cfg.zeta_milestones if step >= m)
        return self.cfg.zeta_init * self.cfg.zeta_decay**passed

    def loss(self, net: EpsNet, x0: torch.Tensor, step: int) -> torch.Tensor:
        t64, gamma = draw_grid_times(self.cfg.step_counts, x0.shape[0])
        lam64 = (
            backward_lambda(gamma)
            if self.cfg.discretization == "backward"
            else hybrid_lambda(gamma)
        )
        t, lam = t64.to(x0), lam64.to(x0)
        alpha = broadcast(self.schedule.alpha(t64).to(x0), x0)
        x_t = alpha.sqrt() * x0 + (1 - alpha).sqrt() * torch.randn_like(x0)
        xi = torch.randn_like(x0)
        eps_hat = net(x_t + broadcast(lam.sqrt(), x0) * xi, t, lam)
        if step < self.cfg.l1_warmup_steps:
            return per_sample((eps_hat - xi).abs()).mean()
        return proximal_matching_loss(eps_hat, xi, self.zeta(step)).mean()


class ProxMatchingConfig(BaseModel):
    """Proximal matching; defaults follow the ProxDM MNIST config (zeta 1.0, halved twice)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["prox_matching"] = "prox_matching"
    discretization: Literal["hybrid", "backward"] = "hybrid"
    step_counts: tuple[int, ...] = (5, 10, 20, 50, 100, 1000)
    l1_warmup_steps: int = Field(default=1000, ge=0)
    zeta_init: float = Field(default=1.0, gt=0)
    zeta_decay: float = Field(default=0.5, gt=0, le=1)
    zeta_milestones: tuple[int, ...] = ()

    @model_validator(mode="after")
    def _backward_grids_valid(self) -> ProxMatchingConfig:
        if self.discretization == "backward":
            bad = [n for n in self.step_counts if float(VPSchedule().gammas(n).max()) >= 2]
            if bad:
                raise ValueError(
                    f"backward discretization needs gamma_k < 2; drop step_counts {bad}"
                )
        if not self.step_counts or min(self.step_counts) < 1:
            raise ValueError("step_counts must be a non-empty list of positive integers")
        return self

    def build(self) -> ProxMatchingObjective:
        return ProxMatchingObjective(self)
