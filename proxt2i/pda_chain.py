"""The PDA sampler of one discretisation, written as a chain of Gaussian transitions (for GRPO).

Both PDA samplers (ProxDM, Fang et al. NeurIPS 2025; src/prox_diff/core.py, ProxSamplerVP)
take, at step k = N..1, a pre-proximal variable and one learned proximal step:
    y_k = a_k x_k + b_k z,   x_{k-1} = P(y_k, t_{k-1}, lambda_k),   z ~ N(0, I),
    hybrid:   a_k = 1 + gamma_k / 2,     b_k = sqrt(gamma_k),     lambda_k = gamma_k
    backward: a_k = 1 / (1 - gamma_k/2), b_k = a_k sqrt(gamma_k), lambda_k = a_k gamma_k
So the action y_{k-1} given the state y_k is N(a_{k-1} P(y_k, t_{k-1}, lambda_k), b_{k-1}^2 I),
an exact density. ProxDM's last step x_0 = P(y_1) is deterministic; to give it a gradient the
policy's final action is x_0 ~ N(P(y_1, t_0, lambda_1), last_std^2 I), as DDPO (Black et al.
2023) keeps a Gaussian at its last DDIM step (eta = 1 on Stable Diffusion's schedule leaves a
std of about 0.02 there). A chain of N steps thus has N scored transitions, one per network call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from proxt2i.samplers.base import EpsFn, prox
from proxt2i.schedule import VPSchedule, backward_lambda, hybrid_lambda


@dataclass(frozen=True)
class PdaChain:
    """Per-step coefficients on the uniform grid; index k - 1 holds step k (k = 1..N)."""

    t: tuple[float, ...]  # t_0..t_N
    lam: tuple[float, ...]
    drift: tuple[float, ...]  # a_k
    noise: tuple[float, ...]  # b_k
    last_std: float

    @classmethod
    def build(cls, sampler: str, steps: int, last_std: float) -> PdaChain:
        """`sampler` is pda_hybrid or pda_backward (the latter refuses grids with gamma >= 2)."""
        s = VPSchedule()
        gammas = s.gammas(steps)
        if sampler == "pda_hybrid":
            g = hybrid_lambda(gammas).tolist()  # lambda_k = gamma_k
            lam, drift, noise = g, [1 + x / 2 for x in g], [x**0.5 for x in g]
        elif sampler == "pda_backward":
            lam = backward_lambda(gammas).tolist()
            g = gammas.tolist()
            drift = [1 / (1 - x / 2) for x in g]
            noise = [x**0.5 / (1 - x / 2) for x in g]
        else:
            raise ValueError(
                f"no PDA chain for sampler {sampler!r}; use pda_hybrid or pda_backward"
            )
        return cls(tuple(s.grid(steps).tolist()), tuple(lam), tuple(drift), tuple(noise), last_std)

    @property
    def steps(self) -> int:
        return len(self.lam)

    def pre_prox(self, x: torch.Tensor, k: int, z: torch.Tensor) -> torch.Tensor:
        """y_k = a_k x_k + b_k z."""
        return self.drift[k - 1] * x + self.noise[k - 1] * z

    def action_mean(self, eps_fn: EpsFn, y: torch.Tensor, k: int) -> torch.Tensor:
        """Mean of the action taken from state y_k: a_{k-1} x_{k-1} (k >= 2) or x_0 (k = 1)."""
        x_prev = prox(eps_fn, y, self.t[k - 1], self.lam[k - 1])
        return x_prev if k == 1 else self.drift[k - 2] * x_prev

    def action_std(self, k: int) -> float:
        """Std of the action taken from state y_k: b_{k-1} (k >= 2) or last_std (k = 1)."""
        return self.last_std if k == 1 else self.noise[k - 2]
