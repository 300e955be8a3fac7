"""Experiment 1 of the science bench: a 2-D Gaussian ring with exact networks.

The score of p_t is closed-form and the proximal operator of -log p_t is solved numerically to
stationarity, so only the discretisation differs between samplers. Metrics: exact empirical W2
(optimal assignment) between the samples and as many target draws; "target vs target" is the
W2 of two independent target draws, the noise floor at that size; the off-mode fraction and the
spread around the modes (`mode_stats`).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from bench.science_table import Measure
from proxt2i import SAMPLERS
from proxt2i.samplers.base import EpsFn
from proxt2i.schedule import VPSchedule

SCHEDULE = VPSchedule()
EXPERIMENT = "2-D ring"
log = logging.getLogger("science")


class RingMixture:
    """Equal-weight isotropic Gaussians N(mu_i, s0^2 I) on a circle; p_t is again a mixture."""

    def __init__(self, k: int = 8, radius: float = 1.2, s0: float = 0.08) -> None:
        ang = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
        self.mu = radius * torch.stack([ang.cos(), ang.sin()], 1)
        self.s0 = s0

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(self.mu), (n,), generator=gen)
        return self.mu[idx] + self.s0 * torch.randn(n, 2, generator=gen, dtype=torch.float64)

    def params(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Component means and variance of p_t (the same for every sample: t is shared)."""
        a = SCHEDULE.alpha(t[:1].double())
        return a.sqrt() * self.mu, a * self.s0**2 + 1 - a

    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        m, v = self.params(t)
        r = torch.softmax(-((x[:, None] - m[None]) ** 2).sum(-1) / (2 * v), dim=1)
        return ((r[..., None] * (m[None] - x[:, None])).sum(1)) / v

    def prox(self, y: torch.Tensor, t: torch.Tensor, lam: float) -> torch.Tensor:
        """argmin_x lam (-log p_t(x)) + |x - y|^2 / 2, from every single-component solution.

        Equal isotropic components make the stationarity condition a fixed point,
        x = (v y + lam sum_i r_i(x) m_i) / (v + lam), whose iteration is a majorize-minimize
        (EM-like) descent; the candidate with the lowest objective is kept.
        """
        m, v = self.params(t)
        x = (v * y[:, None] + lam * m[None]) / (v + lam)  # (B, K, 2) candidates
        for _ in range(30):
            r = torch.softmax(-((x[:, :, None] - m[None, None]) ** 2).sum(-1) / (2 * v), dim=2)
            x = (v * y[:, None] + lam * (r @ m)) / (v + lam)
        logp = torch.logsumexp(-((x[:, :, None] - m[None, None]) ** 2).sum(-1) / (2 * v), dim=2)
        obj = -lam * logp + 0.5 * ((x - y[:, None]) ** 2).sum(-1)
        return x[torch.arange(len(y)), obj.argmin(1)]

    def eps_fn(self, family: str) -> EpsFn:
        def prox_eps(y: torch.Tensor, t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
            lam_f = float(lam[0])
            return (y - self.prox(y, t, lam_f)) / math.sqrt(lam_f)

        def score_eps(x: torch.Tensor, t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
            a = SCHEDULE.alpha(t[:1].double())
            return -(1 - a).sqrt() * self.score(x, t)

        return prox_eps if family == "prox" else score_eps


def w2(a: np.ndarray, b: np.ndarray) -> float:
    """Exact W2 between equal-size empirical measures (optimal assignment)."""
    cost = ((a[:, None] - b[None]) ** 2).sum(-1)
    r, c = linear_sum_assignment(cost)
    return float(np.sqrt(cost[r, c].mean()))


def mode_stats(x: np.ndarray, mix: RingMixture) -> dict[str, float]:
    """off_mode: the fraction farther than 3 s0 from every mode (1.1% for the target: the
    chi(2) tail exp(-9/2)); spread: the mean distance to the nearest mode over its target value
    s0 sqrt(pi / 2) (the Rayleigh mean), so 1 is right, < 1 collapsed, > 1 blurred."""
    d = np.sqrt(((x[:, None] - mix.mu.numpy()[None]) ** 2).sum(-1)).min(1)
    return {
        "off_mode": float((d > 3 * mix.s0).mean()),
        "spread": float(d.mean() / (mix.s0 * math.sqrt(math.pi / 2))),
    }


def ring_metrics(x: np.ndarray, target: np.ndarray, mix: RingMixture) -> dict[str, float]:
    return {"W2": w2(x, target), **mode_stats(x, mix)}


def mixture_measures(n: int, steps: tuple[int, ...], seed: int) -> list[Measure]:
    """Every sampler at every N, with target draws and sampling noise from `seed`."""
    mix, gen = RingMixture(), torch.Generator().manual_seed(seed)
    target = mix.sample(n, gen).numpy()
    out = [
        Measure(EXPERIMENT, "target vs target", 0, k, seed, v)
        for k, v in ring_metrics(mix.sample(n, gen).numpy(), target, mix).items()
    ]
    for name in ("pda_hybrid", "pda_backward", "score_sde", "score_ode"):
        sampler = SAMPLERS[name]().build()  # type: ignore[attr-defined]
        for k in steps:
            g = torch.Generator().manual_seed(1000 + seed)
            noise = torch.randn(n, 2, generator=g, dtype=torch.float64)
            try:
                x = sampler.sample(mix.eps_fn(sampler.family), noise, k, g).numpy()
                metrics = ring_metrics(x, target, mix)
            except ValueError:  # pda_backward refuses grids with gamma_k >= 2
                metrics = dict.fromkeys(("W2", "off_mode", "spread"), math.nan)
            out += [Measure(EXPERIMENT, name, k, m, seed, v) for m, v in metrics.items()]
    log.info("ring mixture, seed %d: done", seed)
    return out
