"""Reward fine-tuning of the proximal sampler with GRPO (Shao et al. 2024, group-relative PPO),
as ProxT2I does (DESIGN section 7).

The policy is the PDA-hybrid chain. Its actions are the pre-proximal variables
    y_k = (1 + gamma_k / 2) x_k + sqrt(gamma_k) z,   x_k = P_theta(y_{k+1}, t_k, gamma_{k+1}),
so each transition y_{k+1} -> y_k is Gaussian, N((1 + gamma_k / 2) P_theta(y_{k+1}), gamma_k I),
with an exact log-probability. y_N does not depend on theta and x_0 = P_theta(y_1) is
deterministic, so a chain of N steps has N - 1 scored transitions. Advantages are rewards
standardised within each prompt's group; the loss is PPO's clipped surrogate per transition.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field

from proxt2i.samplers.base import EpsFn, prox, step_noise
from proxt2i.samplers.pda_hybrid import hybrid_pre_prox
from proxt2i.schedule import VPSchedule


class GrpoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    steps: int = Field(default=10, ge=2)  # sampler steps of each rollout
    group_size: int = Field(default=8, ge=2)  # rollouts per prompt
    clip_eps: float = Field(default=0.2, gt=0)  # PPO ratio clip (Schulman et al. 2017)
    inner_epochs: int = Field(default=1, ge=1)  # updates per batch of rollouts


@dataclass(frozen=True)
class Rollout:
    """ys[i] is y_{N-i} (so ys[0] = y_N); x0 the final sample; logps (N - 1, B) at rollout time."""

    ys: tuple[torch.Tensor, ...]
    x0: torch.Tensor
    logps: torch.Tensor


def _grid(steps: int) -> tuple[list[float], list[float]]:
    s = VPSchedule()
    return s.grid(steps).tolist(), s.gammas(steps).tolist()


def gaussian_logp(y: torch.Tensor, mean: torch.Tensor, var: float) -> torch.Tensor:
    """Per-sample log N(y; mean, var I)."""
    d = y[0].numel()
    sq = ((y - mean) ** 2).reshape(len(y), -1).sum(1)
    return -sq / (2 * var) - 0.5 * d * math.log(2 * math.pi * var)


def transition_logps(eps_fn: EpsFn, ys: tuple[torch.Tensor, ...], steps: int) -> torch.Tensor:
    """(N - 1, B) log-probabilities of y_k given y_{k+1}, k = N-1..1, under the current network."""
    t, gammas = _grid(steps)
    out = []
    for i in range(1, steps):
        k = steps - i  # ys[i] = y_k, ys[i - 1] = y_{k+1}
        x_k = prox(eps_fn, ys[i - 1], t[k], gammas[k])  # P(y_{k+1}, t_k, gamma_{k+1})
        out.append(gaussian_logp(ys[i], (1 + gammas[k - 1] / 2) * x_k, gammas[k - 1]))
    return torch.stack(out)


@torch.no_grad()
def rollout(eps_fn: EpsFn, noise: torch.Tensor, steps: int, gen: torch.Generator) -> Rollout:
    """One PDA-hybrid chain that keeps its actions (same law as PdaHybridSampler)."""
    t, gammas = _grid(steps)
    x, ys = noise, []
    for k in range(steps, 0, -1):
        y = hybrid_pre_prox(x, gammas[k - 1], step_noise(x, gen))
        ys.append(y)
        x = prox(eps_fn, y, t[k - 1], gammas[k - 1])
    return Rollout(tuple(ys), x, transition_logps(eps_fn, tuple(ys), steps))


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """(prompts, group) rewards -> advantages standardised within each group."""
    mean, std = rewards.mean(1, keepdim=True), rewards.std(1, keepdim=True)
    return (rewards - mean) / (std + 1e-6)


def grpo_loss(
    eps_fn: EpsFn, ro: Rollout, advantages: torch.Tensor, steps: int, clip_eps: float
) -> torch.Tensor:
    """PPO clipped surrogate over every transition; advantages are per sample, shape (B,)."""
    ratio = torch.exp(transition_logps(eps_fn, ro.ys, steps) - ro.logps)
    clipped = ratio.clamp(1 - clip_eps, 1 + clip_eps)
    return -torch.minimum(ratio * advantages, clipped * advantages).mean()


def grpo_iteration(
    make_eps: Callable[[torch.Tensor], EpsFn],
    ctx: torch.Tensor,
    reward_fn: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    cfg: GrpoConfig,
    shape: tuple[int, ...],
    gen: torch.Generator,
) -> float:
    """Roll out group_size chains per context row, score them, update; returns mean reward.

    `make_eps(context) -> EpsFn` binds a batch of contexts to the trainable network.
    """
    group_ctx = ctx.repeat_interleave(cfg.group_size, 0)
    eps_fn = make_eps(group_ctx)
    noise = torch.randn((len(group_ctx), *shape), generator=gen).to(ctx.device)
    ro = rollout(eps_fn, noise, cfg.steps, gen)
    rewards = reward_fn(ro.x0).reshape(len(ctx), cfg.group_size)
    adv = group_advantages(rewards).reshape(-1).to(noise)
    for _ in range(cfg.inner_epochs):
        loss = grpo_loss(eps_fn, ro, adv, cfg.steps, cfg.clip_eps)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return float(rewards.mean())
