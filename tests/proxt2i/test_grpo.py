"""GRPO on the PDA chain: the chain is the sampler, exact log-probs and KL, the last transition
scored, per-transition backward (memory flat in N), and a reward that goes up."""

from __future__ import annotations

import math
import weakref

import pytest
import torch

from proxt2i import SAMPLERS
from proxt2i.fake_network import AffineEpsNet
from proxt2i.grpo import (
    GrpoConfig,
    Policy,
    accumulate_gradients,
    group_advantages,
    grpo_iteration,
    rollout,
)
from proxt2i.model import BackboneConfig
from proxt2i.pda_chain import PdaChain
from proxt2i.samplers.base import EpsFn, step_noise


def bound(net: torch.nn.Module, ctx: torch.Tensor) -> Policy:
    def policy(idx: torch.Tensor) -> EpsFn:
        return lambda y, t, lam: net(y, t, lam, ctx[idx])

    return policy


@pytest.mark.parametrize(("sampler", "steps"), [("pda_hybrid", 6), ("pda_backward", 10)])
def test_the_rollout_is_the_pda_sampler_plus_the_last_action_noise(
    sampler: str, steps: int
) -> None:
    net, ctx = AffineEpsNet(), torch.zeros(3, 1, 2)
    noise = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    chain = PdaChain.build(sampler, steps, last_std=0.05)
    ro = rollout(bound(net, ctx), bound(net, ctx), chain, noise, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    eps = bound(net, ctx)(torch.arange(3))
    x0 = SAMPLERS[sampler]().build().sample(eps, noise, steps, gen)  # type: ignore[attr-defined]
    assert torch.allclose(ro.x0, x0 + 0.05 * step_noise(x0, gen), atol=1e-5)
    assert len(ro.states) == len(ro.actions) == steps
    assert ro.logps.shape == ro.kl.shape == (steps, 3)
    assert torch.equal(ro.kl, torch.zeros(steps, 3))  # the reference is the policy


def test_transition_log_probs_are_gaussian_densities_including_the_last() -> None:
    net, ctx = AffineEpsNet(), torch.zeros(1, 1, 2)
    chain = PdaChain.build("pda_hybrid", 3, last_std=0.1)
    ro = rollout(bound(net, ctx), bound(net, ctx), chain, torch.zeros(1, 2), torch.Generator())
    g = chain.lam  # hybrid: lambda_k = gamma_k
    y2, y1 = ro.states[1], ro.states[2]
    # y_1 | y_2 ~ N((1 + g1/2) P(y_2, t_1, g2), g1 I), 2 dimensions
    mean = (1 + g[0] / 2) * (
        y2 - math.sqrt(g[1]) * net(y2, torch.tensor([1 / 3]), torch.tensor([g[1]]), ctx)
    )
    expected = float(-((y1 - mean) ** 2).sum() / (2 * g[0]) - math.log(2 * math.pi * g[0]))
    assert float(ro.logps[1, 0]) == pytest.approx(expected, rel=1e-6)
    # x_0 | y_1 ~ N(P(y_1, t_0, g1), 0.1^2 I)
    x0 = y1 - math.sqrt(g[0]) * net(y1, torch.tensor([0.0]), torch.tensor([g[0]]), ctx)
    last = float(-((ro.x0 - x0) ** 2).sum() / (2 * 0.01) - math.log(2 * math.pi * 0.01))
    assert float(ro.logps[2, 0]) == pytest.approx(last, rel=1e-6)


def test_the_kl_to_the_reference_is_the_closed_form() -> None:
    """Reference eps differs by dc * lambda, so every action mean moves by a known amount."""
    ctx, dc = torch.zeros(2, 1, 2), 0.3
    policy, reference = AffineEpsNet(c=1.0), AffineEpsNet(c=1.0 + dc)
    chain = PdaChain.build("pda_hybrid", 4, last_std=0.1)
    ro = rollout(
        bound(policy, ctx), bound(reference, ctx), chain, torch.ones(2, 3), torch.Generator()
    )
    expected = []
    for k in range(4, 0, -1):  # mean shift: coefficient * sqrt(lambda_k) * dc * lambda_k per dim
        coef = 1.0 if k == 1 else chain.drift[k - 2]
        shift = coef * chain.lam[k - 1] ** 1.5 * dc
        expected.append(3 * shift**2 / (2 * chain.action_std(k) ** 2))
    assert ro.kl[:, 0].tolist() == pytest.approx(expected, rel=1e-5)
    assert ro.kl[:, 1].tolist() == pytest.approx(expected, rel=1e-5)


def test_group_advantages_are_standardised_per_group() -> None:
    adv = group_advantages(torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 8.0]]))
    assert adv[0].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-5)
    assert float(adv[1].mean()) == pytest.approx(0.0, abs=1e-6)


def test_loss_at_the_rollout_policy_is_minus_the_mean_advantage() -> None:
    net, ctx = AffineEpsNet(), torch.zeros(2, 1, 2)
    net.coef.requires_grad_(True)
    chain = PdaChain.build("pda_hybrid", 4, last_std=0.1)
    ro = rollout(bound(net, ctx), bound(net, ctx), chain, torch.zeros(2, 2), torch.Generator())
    idx, adv = torch.arange(2), torch.tensor([1.0, -3.0])
    loss, clipped = accumulate_gradients(bound(net, ctx), chain, ro, idx, adv, GrpoConfig())
    assert (loss, clipped) == (pytest.approx(1.0), 0.0)  # ratio 1 and KL 0 everywhere
    assert net.coef.grad is not None and bool(net.coef.grad.abs().sum() > 0)


def test_grpo_raises_a_brightness_reward() -> None:
    net = AffineEpsNet(a=0.2, b=0.0, c=0.0)
    net.coef.requires_grad_(True)
    frozen = AffineEpsNet(a=0.2, b=0.0, c=0.0)
    opt = torch.optim.Adam([net.coef], lr=0.05)
    cfg = GrpoConfig(steps=5, group_size=8, prompts_per_iteration=2, minibatches=2, kl_coef=0.0)
    chain = PdaChain.build("pda_hybrid", 5, cfg.last_step_std)
    ctx, gen = torch.zeros(16, 1, 2), torch.Generator().manual_seed(0)

    def brightness(x0: torch.Tensor) -> torch.Tensor:
        return x0.reshape(len(x0), -1).mean(1)

    stats = [
        grpo_iteration(
            bound(net, ctx), bound(frozen, ctx), chain, torch.randn(16, 4, generator=gen),
            brightness, net, opt, cfg, gen, grad_clip=10.0,
        )
        for _ in range(30)
    ]  # fmt: skip
    rewards = [s.reward_mean for s in stats]
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.5
    assert stats[0].kl == 0.0 and stats[-1].kl > 0


class SavedTensorCounter:
    """Counts tensors autograd saves for backward that are still alive, and their peak."""

    def __init__(self) -> None:
        self.alive = self.peak = 0

    def pack(self, t: torch.Tensor) -> object:
        holder = _Holder(t)
        self.alive += 1
        self.peak = max(self.peak, self.alive)
        weakref.finalize(holder, self._release)
        return holder

    def _release(self) -> None:
        self.alive -= 1

    @staticmethod
    def unpack(holder: object) -> torch.Tensor:
        assert isinstance(holder, _Holder)
        return holder.tensor


class _Holder:
    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


def peak_saved_tensors(steps: int) -> tuple[int, int]:
    """(peak saved tensors alive, tensors saved in all) of one update of a tiny U-Net."""
    torch.manual_seed(0)
    backbone = BackboneConfig(block_out_channels=(8, 8), norm_num_groups=4, cross_attention_dim=8)
    net = backbone.build(channels=3, sample_size=8, context_dim=4)
    ctx = torch.randn(2, 1, 4)
    chain = PdaChain.build("pda_hybrid", steps, last_std=0.1)
    noise = torch.randn(2, 3, 8, 8)
    ro = rollout(bound(net, ctx), bound(net, ctx), chain, noise, torch.Generator().manual_seed(0))
    counter, total = SavedTensorCounter(), [0]

    def pack(t: torch.Tensor) -> object:
        total[0] += 1
        return counter.pack(t)

    with torch.autograd.graph.saved_tensors_hooks(pack, counter.unpack):
        accumulate_gradients(
            bound(net, ctx), chain, ro, torch.arange(2), torch.tensor([1.0, -1.0]), GrpoConfig()
        )
    assert counter.alive == 0  # every graph was freed by its backward
    return counter.peak, total[0]


def test_per_transition_backward_keeps_memory_flat_in_n() -> None:
    peak2, total2 = peak_saved_tensors(2)
    peak5, total5 = peak_saved_tensors(5)
    assert total5 == 5 * total2 // 2  # one graph per transition was built...
    assert peak2 == peak5 == total2 // 2  # ...and freed before the next one
