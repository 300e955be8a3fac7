"""GRPO (Shao et al. 2024, DeepSeekMath: group-relative PPO) on the PDA chain of a proximal
network, as ProxT2I fine-tunes its sampler with a reward (DESIGN section 7).

The policy is the PDA chain of the discretisation the network was trained for (pda_chain.py):
N Gaussian transitions per rollout, the last one x_0 | y_1 included, each with an exact
log-probability. Per iteration:
- rollouts: group_size chains per prompt, guided exactly as evaluation guides them
  (generate.guided_eps: eps_u + w (eps_c - eps_u), both branches from the trained network);
- advantages: rewards standardised within each prompt's group (DeepSeekMath, outcome
  supervision: A = (r - mean(r)) / std(r));
- loss per transition and sample, averaged like GRPO's per-token loss (DeepSeekMath Eq. 3):
  -min(rho A, clip(rho, 1 - eps, 1 + eps) A) + beta KL, rho = pi_theta / pi_old (PPO,
  Schulman et al. 2017; per denoising step as DDPO, Black et al. 2023). Both transitions are
  N(mean, s^2 I) with the same s, so the KL to the frozen reference network is exact,
  ||mean_theta - mean_ref||^2 / (2 s^2) (the closed form Flow-GRPO, Liu et al. 2025, uses),
  instead of DeepSeekMath's k3 estimator;
- backward once per transition: each network call's graph is freed before the next one is
  built, so memory does not grow with N;
- the rollouts are split into `minibatches` of whole groups, one optimizer step each, for
  `inner_epochs` passes (DDPO's inner loop): later minibatches are off-policy, which is what
  the ratio clip is for.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from proxt2i.pda_chain import PdaChain
from proxt2i.samplers.base import EpsFn, step_noise

# Sample indices (a LongTensor into the rollout batch) -> the eps-function of those samples,
# with their text contexts and guidance bound.
Policy = Callable[[torch.Tensor], EpsFn]


class GrpoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    steps: int = Field(default=10, ge=1)  # N of every rollout: a grid the checkpoint trained on
    guidance: float = 1.0  # CFG weight of the rollouts, as `evaluate --guidance`
    group_size: int = Field(default=8, ge=2)  # rollouts per prompt
    prompts_per_iteration: int = Field(default=4, ge=1)
    minibatches: int = Field(default=1, ge=1)  # optimizer steps per epoch, of whole groups
    inner_epochs: int = Field(default=1, ge=1)
    clip_eps: float = Field(default=0.2, gt=0)  # PPO ratio clip (Schulman et al. 2017)
    kl_coef: float = Field(default=0.01, ge=0)  # beta; DeepSeekMath uses 0.04 on tokens
    last_step_std: float = Field(default=0.02, gt=0)  # std of x_0 | y_1 (pda_chain.py)

    @model_validator(mode="after")
    def _whole_groups(self) -> GrpoConfig:
        if self.prompts_per_iteration % self.minibatches:
            raise ValueError(
                f"prompts_per_iteration ({self.prompts_per_iteration}) must be a multiple of "
                f"minibatches ({self.minibatches}): a minibatch holds whole groups"
            )
        return self


@dataclass(frozen=True)
class Rollout:
    """Row i is transition i (k = N - i): states y_N..y_1, actions y_{N-1}..y_1, x_0.

    logps (N, B) are under the rollout policy; ref_means are the reference network's action
    means at the same states (they do not depend on theta, so the update reuses them); kl
    (N, B) is the exact per-transition KL of the rollout policy to the reference.
    """

    states: tuple[torch.Tensor, ...]
    actions: tuple[torch.Tensor, ...]
    logps: torch.Tensor
    ref_means: tuple[torch.Tensor, ...]
    kl: torch.Tensor

    @property
    def x0(self) -> torch.Tensor:
        return self.actions[-1]


@dataclass(frozen=True)
class IterationStats:
    """reward_mean / reward_std over the iteration's rollouts; kl the mean path KL (sum over
    transitions) of the policy that rolled out; clip_fraction the share of (transition,
    sample) ratios outside 1 +- clip_eps over every update; loss the mean minibatch loss."""

    reward_mean: float
    reward_std: float
    kl: float
    clip_fraction: float
    loss: float


def gaussian_logp(y: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """Per-sample log N(y; mean, std^2 I)."""
    d = y[0].numel()
    sq = ((y - mean) ** 2).reshape(len(y), -1).sum(1)
    return -sq / (2 * std**2) - d * (math.log(std) + 0.5 * math.log(2 * math.pi))


def gaussian_kl(mean: torch.Tensor, ref: torch.Tensor, std: float) -> torch.Tensor:
    """Per-sample KL(N(mean, s^2 I) || N(ref, s^2 I)) = ||mean - ref||^2 / (2 s^2)."""
    return ((mean - ref) ** 2).reshape(len(mean), -1).sum(1) / (2 * std**2)


@torch.no_grad()
def rollout(
    policy: Policy, reference: Policy, chain: PdaChain, noise: torch.Tensor, gen: torch.Generator
) -> Rollout:
    """One chain per row of `noise` (= x_N); draws z_N..z_1 then the last action's noise, so
    up to that final draw it follows the PDA sampler of the same discretisation exactly."""
    every = torch.arange(len(noise))
    pi, ref = policy(every), reference(every)
    y = chain.pre_prox(noise, chain.steps, step_noise(noise, gen))
    states, actions, logps, ref_means, kls = [], [], [], [], []
    for k in range(chain.steps, 0, -1):
        mean, std = chain.action_mean(pi, y, k), chain.action_std(k)
        ref_mean = chain.action_mean(ref, y, k)  # kept: it does not depend on theta
        action = mean + std * step_noise(mean, gen)
        states.append(y)
        actions.append(action)
        logps.append(gaussian_logp(action, mean, std))
        ref_means.append(ref_mean)
        kls.append(gaussian_kl(mean, ref_mean, std))
        y = action
    return Rollout(
        tuple(states), tuple(actions), torch.stack(logps), tuple(ref_means), torch.stack(kls)
    )


def group_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """(prompts, group) rewards -> advantages standardised within each group."""
    mean, std = rewards.mean(1, keepdim=True), rewards.std(1, keepdim=True)
    return (rewards - mean) / (std + 1e-6)


def transition_loss(
    eps_fn: EpsFn,
    chain: PdaChain,
    ro: Rollout,
    i: int,
    idx: torch.Tensor,
    adv: torch.Tensor,
    cfg: GrpoConfig,
) -> tuple[torch.Tensor, float]:
    """(loss of transition i over samples idx, divided by N; fraction of clipped ratios)."""
    k = chain.steps - i
    std = chain.action_std(k)
    mean = chain.action_mean(eps_fn, ro.states[i][idx], k)
    ratio = torch.exp(gaussian_logp(ro.actions[i][idx], mean, std) - ro.logps[i][idx])
    clipped = ratio.clamp(1 - cfg.clip_eps, 1 + cfg.clip_eps)
    surrogate = torch.minimum(ratio * adv, clipped * adv)
    kl = gaussian_kl(mean, ro.ref_means[i][idx], std)
    loss = (cfg.kl_coef * kl - surrogate).mean() / chain.steps
    return loss, float(((ratio - 1).abs() > cfg.clip_eps).float().mean())


def accumulate_gradients(
    policy: Policy,
    chain: PdaChain,
    ro: Rollout,
    idx: torch.Tensor,
    adv: torch.Tensor,
    cfg: GrpoConfig,
) -> tuple[float, float]:
    """Backward once per transition, so one network call's graph is alive at a time.

    Returns (the minibatch loss, its fraction of clipped ratios); gradients accumulate.
    """
    eps_fn = policy(idx)
    total, clipped = 0.0, 0.0
    for i in range(chain.steps):
        loss, frac = transition_loss(eps_fn, chain, ro, i, idx, adv[idx], cfg)
        loss.backward()
        total, clipped = total + float(loss.detach()), clipped + frac / chain.steps
    return total, clipped


def grpo_iteration(
    policy: Policy,
    reference: Policy,
    chain: PdaChain,
    noise: torch.Tensor,
    reward_fn: Callable[[torch.Tensor], torch.Tensor],
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    cfg: GrpoConfig,
    gen: torch.Generator,
    grad_clip: float,
) -> IterationStats:
    """Roll out len(noise) = prompts x group_size chains, score x_0, update `net`.

    Rows of `noise` are grouped by prompt (row = prompt * group_size + member).
    """
    ro = rollout(policy, reference, chain, noise, gen)
    rewards = reward_fn(ro.x0).reshape(-1, cfg.group_size).to(torch.float64)
    adv = group_advantages(rewards).reshape(-1).to(noise)
    losses, clipped = [], []
    for _ in range(cfg.inner_epochs):
        for idx in torch.arange(len(noise)).chunk(cfg.minibatches):
            optimizer.zero_grad(set_to_none=True)
            loss, frac = accumulate_gradients(policy, chain, ro, idx, adv, cfg)
            torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
            optimizer.step()
            losses.append(loss)
            clipped.append(frac)
    return IterationStats(
        float(rewards.mean()),
        float(rewards.std(unbiased=False)),
        float(ro.kl.sum(0).mean()),
        sum(clipped) / len(clipped),
        sum(losses) / len(losses),
    )
