"""VP-SDE noise schedule, sampling grids and proximal step sizes.

Formulas follow Fang, Díaz, Buchanan, Sulam, "Beyond Scores: Proximal Diffusion Models"
(ProxDM, NeurIPS 2025), which uses the VP SDE of Song et al. (ICLR 2021):
dX = -1/2 beta(t) X dt + sqrt(beta(t)) dW on t in [0, 1],
beta(t) = beta_min + (beta_max - beta_min) t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# Song et al. 2021 (VP SDE): beta_min = 0.1, beta_max = 20.
BETA_MIN = 0.1
BETA_MAX = 20.0


@dataclass(frozen=True)
class VPSchedule:
    """Linear-beta VP schedule; all quantities are closed-form."""

    beta_min: float = BETA_MIN
    beta_max: float = BETA_MAX

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + (self.beta_max - self.beta_min) * t

    def beta_integral(self, t0: torch.Tensor, t1: torch.Tensor) -> torch.Tensor:
        """Integral of beta over [t0, t1]: the step size gamma_k when [t0, t1] is one step."""
        slope = self.beta_max - self.beta_min
        return self.beta_min * (t1 - t0) + 0.5 * slope * (t1**2 - t0**2)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_t = exp(-int_0^t beta), so x_t = sqrt(alpha_t) x0 + sqrt(1 - alpha_t) n."""
        return torch.exp(-self.beta_integral(torch.zeros_like(t), t))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The forward VP marginal x_t = sqrt(alpha_t) x0 + sqrt(1 - alpha_t) noise.

        `t` holds one time per batch row (float64 keeps alpha exact near t = 0); alpha is cast
        to x0's dtype and device before the square roots, so every objective noises alike
        (diffusers keeps `add_noise` on the scheduler for the same reason).
        """
        alpha = self.alpha(t).to(x0).view([x0.shape[0]] + [1] * (x0.ndim - 1))
        return alpha.sqrt() * x0 + (1 - alpha).sqrt() * noise

    def grid(self, steps: int) -> torch.Tensor:
        """Uniform grid t_i = i / N, i = 0..N (ProxDM, Sec. 4)."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        return torch.arange(steps + 1, dtype=torch.float64) / steps

    def gammas(self, steps: int) -> torch.Tensor:
        """gamma_k = int_{t_{k-1}}^{t_k} beta, k = 1..N (index k-1 in the returned tensor)."""
        t = self.grid(steps)
        return self.beta_integral(t[:-1], t[1:])


def hybrid_lambda(gamma: torch.Tensor) -> torch.Tensor:
    """Proximal parameter of the PDA-hybrid step: lambda = gamma_k (ProxDM, Eq. hybrid)."""
    return gamma


def backward_lambda(gamma: torch.Tensor) -> torch.Tensor:
    """Proximal parameter of the PDA-backward step: gamma_k / (1 - gamma_k / 2).

    Valid only when gamma_k < 2 (the implicit drift term must not flip sign; ProxDM, Eq. backward).
    """
    if bool((gamma >= 2).any()):
        worst = float(gamma.max())
        raise ValueError(
            f"PDA-backward needs gamma_k < 2 but the grid has gamma_k = {worst:.3f}; "
            "use more steps or the pda_hybrid sampler"
        )
    return gamma / (1 - gamma / 2)


def log_lambda_feature(lam: torch.Tensor) -> torch.Tensor:
    """Map lambda (1e-6 .. 1e2) to a positive scalar the backbone embeds like a timestep."""
    return (torch.log(lam.clamp_min(1e-6)) + math.log(1e6)) * 50.0
