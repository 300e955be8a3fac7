"""Shared pieces of every sampler: the eps-function contract, the proximal map, Tweedie.

A sampler sees the network only through `EpsFn(y, t, lam) -> eps`, with text conditioning and
guidance already bound, so one sampler serves pixel and latent models, any text encoder and the
deterministic fake network of the contract tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Literal, Protocol

import torch

from proxt2i.schedule import VPSchedule

EpsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Family = Literal["prox", "score"]

# The score network shares the proximal backbone; it has no lambda, so it is fed this constant.
SCORE_LAMBDA = 1.0


class Sampler(Protocol):
    """Draws x_0 from x_N with exactly `steps` network calls."""

    name: str
    family: Family

    def sample(
        self, eps_fn: EpsFn, noise: torch.Tensor, steps: int, generator: torch.Generator
    ) -> torch.Tensor: ...


def batch_scalar(value: float, like: torch.Tensor) -> torch.Tensor:
    """A (B,) tensor holding `value`, on the device and dtype of `like`."""
    return torch.full((like.shape[0],), value, device=like.device, dtype=like.dtype)


def prox(eps_fn: EpsFn, y: torch.Tensor, t: float, lam: float) -> torch.Tensor:
    """Learned proximal operator P(y, t, lambda) = y - sqrt(lambda) eps(y, t, lambda) (ProxDM)."""
    eps = eps_fn(y, batch_scalar(t, y), batch_scalar(lam, y))
    return y - lam**0.5 * eps


def step_noise(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise drawn on CPU from `generator`, so results match across devices."""
    z = torch.randn(like.shape, generator=generator, dtype=torch.float32)
    return z.to(device=like.device, dtype=like.dtype)


def score_from_eps(schedule: VPSchedule, eps: torch.Tensor, t: float) -> torch.Tensor:
    """grad log p_t(x) = -eps / sqrt(1 - alpha_t) for the eps-parameterised model (DDPM)."""
    alpha = float(schedule.alpha(torch.tensor(t, dtype=torch.float64)))
    return -eps / (1 - alpha) ** 0.5


def tweedie(schedule: VPSchedule, eps_fn: EpsFn, x: torch.Tensor, t: float) -> torch.Tensor:
    """Final denoising step: E[x_0 | x_t] = (x_t - sqrt(1 - alpha_t) eps) / sqrt(alpha_t)."""
    alpha = float(schedule.alpha(torch.tensor(t, dtype=torch.float64)))
    eps = eps_fn(x, batch_scalar(t, x), batch_scalar(SCORE_LAMBDA, x))
    return (x - (1 - alpha) ** 0.5 * eps) / alpha**0.5


class GridSampler:
    """The chain every sampler runs, from x_N = noise down the uniform grid t_i = i/N.

    A proximal sampler steps k = N..1, each step landing on t_{k-1}; a score sampler steps
    k = N..2 from t_k and closes with Tweedie denoising at t_1. Either way: N network calls.
    Subclasses give ``step`` (and ``check``, to refuse a grid before any network call).
    """

    name: ClassVar[str]
    family: ClassVar[Family]

    def __init__(self, schedule: VPSchedule | None = None) -> None:
        self.schedule = schedule or VPSchedule()

    def check(self, gammas: torch.Tensor) -> None:
        return None

    def step(
        self,
        eps_fn: EpsFn,
        x: torch.Tensor,
        k: int,
        grid: tuple[torch.Tensor, torch.Tensor],
        generator: torch.Generator,
    ) -> torch.Tensor:
        """x_{k-1} from x_k; ``grid`` is (t_0..t_N, gamma_1..gamma_N)."""
        raise NotImplementedError

    def sample(
        self, eps_fn: EpsFn, noise: torch.Tensor, steps: int, generator: torch.Generator
    ) -> torch.Tensor:
        grid = self.schedule.grid(steps), self.schedule.gammas(steps)
        self.check(grid[1])
        last = 1 if self.family == "prox" else 2
        x = noise
        for k in range(steps, last - 1, -1):
            x = self.step(eps_fn, x, k, grid, generator)
        if self.family == "prox":
            return x
        return tweedie(self.schedule, eps_fn, x, float(grid[0][1]))
