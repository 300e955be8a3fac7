"""GRPO on the proximal chain: exact transition log-probs and a reward that goes up."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from proxt2i.fake_network import AffineEpsNet
from proxt2i.grpo import (
    GrpoConfig,
    group_advantages,
    grpo_iteration,
    grpo_loss,
    rollout,
    transition_logps,
)
from proxt2i.samplers.base import EpsFn
from proxt2i.samplers.pda_hybrid import PdaHybridSampler
from proxt2i.schedule import VPSchedule


def bound(net: AffineEpsNet, ctx: torch.Tensor) -> EpsFn:
    return lambda y, t, lam: net(y, t, lam, ctx)


def test_rollout_follows_the_hybrid_sampler_exactly() -> None:
    net, ctx = AffineEpsNet(), torch.zeros(3, 1, 2)
    noise = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    ro = rollout(bound(net, ctx), noise, 6, torch.Generator().manual_seed(5))
    ref = PdaHybridSampler().sample(bound(net, ctx), noise, 6, torch.Generator().manual_seed(5))
    assert torch.allclose(ro.x0, ref, atol=1e-6)
    assert len(ro.ys) == 6 and ro.logps.shape == (5, 3)


def test_transition_log_prob_is_the_gaussian_density() -> None:
    net, ctx = AffineEpsNet(), torch.zeros(1, 1, 2)
    ro = rollout(bound(net, ctx), torch.zeros(1, 2), 3, torch.Generator().manual_seed(0))
    # last scored transition: y_1 | y_2 ~ N((1 + g1/2) P(y_2, t_1, g2), g1 I), 2 dimensions
    g = VPSchedule().gammas(3).tolist()
    y2, y1 = ro.ys[1], ro.ys[2]
    eps = net(y2, torch.tensor([1 / 3]), torch.tensor([g[1]]), ctx)
    mean = (1 + g[0] / 2) * (y2 - math.sqrt(g[1]) * eps)
    expected = float(-((y1 - mean) ** 2).sum() / (2 * g[0]) - math.log(2 * math.pi * g[0]))
    assert float(transition_logps(bound(net, ctx), ro.ys, 3)[-1, 0]) == pytest.approx(expected)


def test_group_advantages_are_standardised_per_group() -> None:
    adv = group_advantages(torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 8.0]]))
    assert adv[0].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-5)
    assert float(adv[1].mean()) == pytest.approx(0.0, abs=1e-6)


def test_loss_at_the_rollout_policy_is_minus_the_mean_advantage() -> None:
    net, ctx = AffineEpsNet(), torch.zeros(2, 1, 2)
    ro = rollout(bound(net, ctx), torch.zeros(2, 2), 4, torch.Generator().manual_seed(0))
    adv = torch.tensor([1.0, -3.0])
    assert float(grpo_loss(bound(net, ctx), ro, adv, 4, 0.2)) == pytest.approx(1.0)


def test_grpo_raises_a_brightness_reward() -> None:
    torch.manual_seed(0)
    net = AffineEpsNet(a=0.2, b=0.0, c=0.0)
    net.coef.requires_grad_(True)
    opt = torch.optim.Adam([net.coef], lr=0.05)
    cfg = GrpoConfig(steps=5, group_size=8)
    ctx, gen = torch.zeros(2, 1, 2), torch.Generator().manual_seed(0)

    def brightness(x0: torch.Tensor) -> torch.Tensor:
        return x0.reshape(len(x0), -1).mean(1)

    def make_eps(c: torch.Tensor) -> EpsFn:
        return bound(net, c)

    rewards = [grpo_iteration(make_eps, ctx, brightness, opt, cfg, (4,), gen) for _ in range(30)]
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.5


def test_finetune_a_checkpoint_with_a_reward(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from proxt2i import api
    from proxt2i.checkpoint import load_family_state
    from proxt2i.finetune import finetune_checkpoint

    class Brightness:  # a prompt-image reward implementing the Reward protocol
        name = "brightness"

        def score(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
            return images.reshape(len(images), -1).mean(1).astype(np.float64)

    out = finetune_checkpoint(
        tiny_checkpoint,
        ["a face"],
        Brightness(),
        GrpoConfig(steps=3, group_size=2),
        2,
        1e-3,
        tmp_path / "ft",
    )
    assert out == tmp_path / "ft" / "checkpoints" / "step_0000005"
    before = load_family_state(tiny_checkpoint, "prox")["ema"]
    after = load_family_state(out, "prox")["ema"]
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(  # the score network is carried over untouched
        load_family_state(tiny_checkpoint, "score")["ema"]["unet.conv_in.weight"],
        load_family_state(out, "score")["ema"]["unet.conv_in.weight"],
    )
    assert (
        api.sample(out, ["a face"], 3, "pda_hybrid", 1.0, 0, tmp_path / "s") / "0000.png"
    ).is_file()
