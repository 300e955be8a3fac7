"""Proximal matching objective (ProxDM, Fang et al. NeurIPS 2025, Eq. 7-8).

Training pairs: draw N from the step counts the sampler will use (`step_weights`: log10 N or
N^(1/p), objectives/step_weights.py), k uniform in 1..N, t = t_{k-1} = (k-1)/N and the lambda
the sampler uses there; x_t = sqrt(alpha_t) x0 + sqrt(1 - alpha_t) n, y = x_t + sqrt(lambda) xi,
target x_t.
The loss is taken on eps (ProxDM's "loss balancing": x_hat - x_t = sqrt(lambda)(eps_hat - xi), so
dividing by sqrt(lambda) makes every lambda count alike):
    l1 warm-up:        mean |eps_hat - xi|
    proximal matching: 1 - exp(-||eps_hat - xi||^2 / (d zeta^2)), zeta multiplied by zeta_decay
                       at each of zeta_milestones (absolute steps, inside the PM phase).
ProxDM's latent CelebA-HQ run (configs/celeba_hq_vae/prox_hybrid.py lines 23-27, with
src/prox_diff/utils/img_exp/loss_lr_schedule.py lines 44-67): 300k L1 iterations, then zeta 2.0
halved once, half-way through the remaining 1.2M (`pm_gamma_decay_stages = 2`); here that is
l1_warmup_steps 300000, zeta_init 2.0, zeta_decay 0.5, zeta_milestones [900000].
The optimizer's learning rate follows the same two phases (`phase`, proxt2i/lr_schedule.py).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from proxt2i.objectives.base import EpsNet, broadcast, per_sample
from proxt2i.objectives.step_weights import Log10Weights, StepWeights
from proxt2i.samplers.base import Family
from proxt2i.schedule import VPSchedule, backward_lambda, hybrid_lambda

LOG10 = Log10Weights()  # the default draw, as before step weights were configurable


def proximal_matching_loss(pred: torch.Tensor, target: torch.Tensor, zeta: float) -> torch.Tensor:
    """Per-sample 1 - exp(-||pred - target||^2 / (d zeta^2)); ~ MSE / zeta^2 as zeta grows."""
    mse = per_sample((pred - target) ** 2)
    return 1 - torch.exp(-mse / zeta**2)


def draw_grid_times(
    step_counts: tuple[int, ...],
    batch: int,
    generator: torch.Generator | None = None,
    step_weights: StepWeights = LOG10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(t_{k-1}, gamma_k) for random N (drawn with `step_weights`) and k uniform in 1..N;
    float64, CPU."""
    counts = torch.tensor(step_counts, dtype=torch.float64)
    weights = step_weights.weights(counts)
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

    def phase(self, step: int) -> tuple[str, int]:
        """("l1", 0) during the L1 warm-up, then ("pm", l1_warmup_steps)."""
        if step < self.cfg.l1_warmup_steps:
            return "l1", 0
        return "pm", self.cfg.l1_warmup_steps

    def zeta(self, step: int) -> float:
        """zeta_init times zeta_decay per milestone already passed (ProxDM: 0.5 in stages)."""
        passed = sum(1 for m in self.cfg.zeta_milestones if step >= m)
        return self.cfg.zeta_init * self.cfg.zeta_decay**passed

    def loss(self, net: EpsNet, x0: torch.Tensor, step: int) -> torch.Tensor:
        t64, gamma = draw_grid_times(
            self.cfg.step_counts, x0.shape[0], step_weights=self.cfg.step_weights
        )
        lam64 = (
            backward_lambda(gamma)
            if self.cfg.discretization == "backward"
            else hybrid_lambda(gamma)
        )
        t, lam = t64.to(x0), lam64.to(x0)
        x_t = self.schedule.add_noise(x0, torch.randn_like(x0), t64)
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
    step_weights: StepWeights = LOG10
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

    @model_validator(mode="after")
    def _milestones_in_pm_phase(self) -> ProxMatchingConfig:
        m = list(self.zeta_milestones)
        if m != sorted(set(m)) or (m and m[0] <= self.l1_warmup_steps):
            raise ValueError(
                f"zeta_milestones {m} must be increasing steps after l1_warmup_steps "
                f"({self.l1_warmup_steps}): zeta only acts in the proximal-matching phase"
            )
        return self

    def build(self) -> ProxMatchingObjective:
        return ProxMatchingObjective(self)
