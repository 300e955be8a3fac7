"""Deterministic eps-networks with the EpsUNet call signature, for contract tests and benches.

`AffineEpsNet` gives golden values by hand; `GaussianOracleEps` is the exact network for data
x0 ~ N(0, s2 I): p_t = N(0, v_t I) with v_t = alpha_t s2 + 1 - alpha_t, so
    prox_{lambda (-log p_t)}(y) = y v_t / (v_t + lambda),
    eps_prox(y, t, lambda) = y sqrt(lambda) / (v_t + lambda),
    eps_score(x, t) = sqrt(1 - alpha_t) x / v_t           (Tweedie / DDPM parameterisation).
"""

from __future__ import annotations

import torch
from torch import nn

from proxt2i.objectives.base import broadcast
from proxt2i.samplers.base import Family
from proxt2i.schedule import VPSchedule


class AffineEpsNet(nn.Module):
    """eps = a y + b t + c lambda + d mean(context), broadcast per sample."""

    def __init__(self, a: float = 0.5, b: float = 1.0, c: float = 1.0, d: float = 0.0) -> None:
        super().__init__()
        self.coef = nn.Parameter(torch.tensor([a, b, c, d]), requires_grad=False)

    def forward(
        self, y: torch.Tensor, t: torch.Tensor, lam: torch.Tensor, context: torch.Tensor
    ) -> torch.Tensor:
        a, b, c, d = self.coef
        shift = b * t + c * lam + d * context.reshape(context.shape[0], -1).mean(1)
        return a * y + broadcast(shift, y)


class GaussianOracleEps(nn.Module):
    """The exact proximal or score eps-network for x0 ~ N(0, s2 I); ignores the context."""

    def __init__(self, s2: float, family: Family) -> None:
        super().__init__()
        self.s2, self.family, self.schedule = s2, family, VPSchedule()

    def forward(
        self, y: torch.Tensor, t: torch.Tensor, lam: torch.Tensor, context: torch.Tensor | None
    ) -> torch.Tensor:
        alpha = broadcast(self.schedule.alpha(t.double()), y)
        v = alpha * self.s2 + 1 - alpha
        if self.family == "prox":
            lam_b = broadcast(lam.double(), y)
            return (y * lam_b.sqrt() / (v + lam_b)).to(y.dtype)
        return (y * (1 - alpha).sqrt() / v).to(y.dtype)
