"""The science bench's pieces and the two facts it rests on: the CFG formula of generation and
proximal matching recovering the closed-form proximal operator of a Gaussian."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.science import grpo_verdict, paired_change
from bench.science_digits import GRIDS, GridEpsMse
from bench.science_grpo import DigitReward
from bench.science_mixture import w2
from bench.science_net import DigitEpsNet
from bench.science_table import Measure, aggregate, markdown_table, spread
from proxt2i.generate import guided_eps
from proxt2i.objectives.prox_matching import ProxMatchingConfig
from proxt2i.schedule import VPSchedule, hybrid_lambda
from proxt2i.text_context import TextContext


class ContextScaledNet(torch.nn.Module):
    """eps = y * t + (mean of the real context tokens); counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(
        self, y: torch.Tensor, t: torch.Tensor, lam: torch.Tensor, ctx: TextContext
    ) -> torch.Tensor:
        self.calls += 1
        m = ctx.mask[..., None].float()
        shift = (ctx.tokens * m).sum((1, 2)) / m.sum((1, 2))
        return y * t[:, None] + shift[:, None] + 0 * lam[:, None]


def contexts() -> tuple[TextContext, TextContext]:
    cond = TextContext.unmasked(torch.tensor([[[2.0]], [[-1.0]]]))
    # the null context has padding: its masked token must not count
    null = TextContext(torch.tensor([[[0.5], [9.0]]] * 2), torch.tensor([[True, False]] * 2))
    return cond, null


def test_guided_eps_is_uncond_plus_w_times_the_difference() -> None:
    net, (cond, null) = ContextScaledNet(), contexts()
    y, t, lam = torch.tensor([[1.0], [3.0]]), torch.tensor([0.5, 0.25]), torch.ones(2)
    eps = guided_eps(net, cond, null, 3.0)(y, t, lam)  # type: ignore[arg-type]
    eps_c = y * t[:, None] + torch.tensor([[2.0], [-1.0]])
    eps_u = y * t[:, None] + 0.5
    assert torch.equal(eps, eps_u + 3.0 * (eps_c - eps_u))
    assert eps.flatten().tolist() == [5.5, -3.25]
    assert net.calls == 1  # both branches in one batched forward pass


def test_guidance_one_is_the_conditional_network_alone() -> None:
    net, (cond, null) = ContextScaledNet(), contexts()
    y, t = torch.tensor([[1.0], [3.0]]), torch.tensor([0.5, 0.25])
    eps = guided_eps(net, cond, null, 1.0)(y, t, torch.ones(2))  # type: ignore[arg-type]
    assert eps.flatten().tolist() == [2.5, -0.25]
    assert net.calls == 1


# ---- proximal matching against the closed-form Gaussian prox
#
# Data x0 ~ N(0, v I). At time t, x_t = sqrt(a) x0 + sqrt(1 - a) n ~ N(0, v_t I) with
# v_t = a v + 1 - a (a = alpha_t), and the training input is y = x_t + sqrt(lam) xi.
# The proximal operator of f = -log p_t = |x|^2 / (2 v_t) + const with step lam is
#     prox(y) = argmin_x lam |x|^2 / (2 v_t) + |x - y|^2 / 2 = v_t y / (v_t + lam),
# so the network's eps = (y - prox(y)) / sqrt(lam) = y sqrt(lam) / (v_t + lam).
# (ξ, y) are jointly Gaussian, so the posterior of xi given y is Gaussian with mean
# Cov(xi, y) / Var(y) * y = sqrt(lam) y / (v_t + lam): the same value. Its mean, median and mode
# coincide, so the L1 warm-up (median) and proximal matching (mode) both target it. For a
# predictor linear in y, eps_hat = c y, the residual c y - xi is N(0, s^2(c)) per coordinate and
# every one of those losses is increasing in s^2(c), so the best c is the closed form.
VAR = 0.5
STEPS = 5


class LinearInY(torch.nn.Module):
    """eps = y * g(t, log lam), g a small MLP: the form of the true solution, any coefficient."""

    def __init__(self) -> None:
        super().__init__()
        self.g = torch.nn.Sequential(
            torch.nn.Linear(2, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)
        )

    def forward(self, y: torch.Tensor, t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        feats = torch.stack([t, lam.log()], dim=1)
        return y * self.g(feats)


def closed_form_coefficient(t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    a = VPSchedule().alpha(t)
    return lam.sqrt() / (a * VAR + 1 - a + lam)


@pytest.fixture(scope="module")
def gaussian_prox_net() -> LinearInY:
    torch.manual_seed(0)  # the objective draws times and noise from torch's global generator
    objective = ProxMatchingConfig(
        step_counts=(STEPS,), l1_warmup_steps=150, zeta_milestones=(300,)
    ).build()
    net = LinearInY()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=400)
    for step in range(400):
        x0 = math.sqrt(VAR) * torch.randn(2048, 2)
        loss = objective.loss(net, x0, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net


def test_prox_matching_learns_the_gaussian_prox(gaussian_prox_net: LinearInY) -> None:
    """At every step of the N = 5 grid it trained on (t_{k-1}, lam = gamma_k), the learned
    coefficient of y is sqrt(lam) / (v_t + lam) within 0.03 (measured: 0.013; the values are
    0.41..0.70, and ignoring the data variance, sqrt(lam) / (1 + lam), is 0.25 off at t = 0)."""
    s = VPSchedule()
    t = s.grid(STEPS)[:-1].float()
    lam = hybrid_lambda(s.gammas(STEPS)).float()
    want = closed_form_coefficient(t.double(), lam.double()).float()
    y = torch.full((STEPS, 1), 1.0)
    with torch.no_grad():
        got = gaussian_prox_net(y, t, lam)[:, 0]
    assert want.min() > 0.2 and want.max() < 0.8  # the coefficients span a real range
    assert torch.allclose(got, want, atol=0.03), (got.tolist(), want.tolist())


# ---- the bench's pieces


def test_w2_uses_the_optimal_assignment() -> None:
    a = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    b = np.array([[3.0, 1.0], [0.0, 1.0], [1.0, 1.0]])  # a shifted by (0, 1), rows permuted
    assert w2(a, b) == 1.0
    # identity matching would pay (9 + 2 + 5) / 3 per point: sqrt(16 / 3)
    assert w2(a, a[::-1]) == 0.0


def test_spread_is_mean_and_sample_std() -> None:
    s = spread([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.n) == (2.0, 1.0, 3)
    assert str(s) == "2 ± 1"
    assert str(spread([0.25])) == "0.25"
    assert str(spread([1.0, math.nan])) == "n/a"


def test_aggregate_groups_seeds_per_row_and_metric() -> None:
    measures = [
        Measure("digits", "pda_hybrid", 5, metric, seed, value)
        for seed, (fd, acc) in enumerate([(10.0, 0.5), (14.0, 0.7), (12.0, 0.6)])
        for metric, value in (("FD", fd), ("acc", acc))
    ] + [Measure("digits", "score_sde", 5, "FD", 0, 30.0)]
    rows = aggregate(measures)
    assert list(rows) == [("digits", "pda_hybrid", 5), ("digits", "score_sde", 5)]
    fd = rows[("digits", "pda_hybrid", 5)]["FD"]
    assert (fd.mean, fd.std, fd.n) == (12.0, 2.0, 3)
    assert markdown_table(measures, ("FD", "acc")).splitlines() == [
        "| experiment | method | steps | FD | acc |",
        "|---|---|---|---|---|",
        "| digits | pda_hybrid | 5 | 12 ± 2 | 0.6 ± 0.1 |",
        "| digits | score_sde | 5 | 30 |  |",
    ]


def test_grid_score_times_are_the_times_score_samplers_query() -> None:
    torch.manual_seed(0)
    t = GridEpsMse(ProxMatchingConfig(step_counts=GRIDS)).times(4000)
    on_grid = torch.stack([(t * n - (t * n).round()).abs() < 1e-9 for n in GRIDS]).any(0)
    assert bool(on_grid.all())
    assert float(t.min()) >= 1 / 50 and float(t.max()) == 1.0  # t_1 .. t_N, never t_0
    assert float((t == 0.2).double().mean()) > 0.02  # N = 5's t_1 is drawn too


class FixedProba:
    """The classifier surface DigitReward reads: probabilities from the image's mean pixel."""

    def proba(self, images: np.ndarray) -> np.ndarray:
        m = images.reshape(len(images), -1).mean(1)
        p = np.zeros((len(images), 10))
        p[:, 3], p[:, 7] = (m + 1) / 2, (1 - m) / 2
        return p


def test_digit_reward_is_the_probability_of_the_prompted_digit() -> None:
    reward = DigitReward(FixedProba())  # type: ignore[arg-type]
    white = np.full((2, 8, 8, 3), 255, dtype=np.uint8)
    got = reward.score(white, ["a handwritten digit three", "a handwritten digit seven"])
    assert got.tolist() == [1.0, 0.0]
    black = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    assert reward.score(black, ["a handwritten digit seven"]).tolist() == [1.0]


def test_digit_net_ignores_padding_and_tells_classes_apart() -> None:
    torch.manual_seed(0)
    net = DigitEpsNet(64, 3, width=16, depth=1)
    torch.nn.init.normal_(net.out.weight)  # the output layer starts at zero: make it speak
    y, t, lam = torch.randn(2, 1, 8, 8), torch.tensor([0.3, 0.3]), torch.tensor([0.1, 0.1])
    one_hot = torch.eye(3)[[0, 1]][:, None]  # classes 0 and 1, one token each
    padded = TextContext(
        torch.cat([one_hot, torch.full((2, 1, 3), 7.0)], dim=1), torch.tensor([[True, False]] * 2)
    )
    with torch.no_grad():
        plain = net(y, t, lam, TextContext.unmasked(one_hot))
        assert plain.shape == (2, 1, 8, 8)
        assert torch.allclose(net(y, t, lam, padded), plain, atol=1e-6)
        swapped = net(y, t, lam, TextContext.unmasked(one_hot.flip(0)))
    assert not torch.allclose(swapped, plain, atol=1e-3)


def grpo_measures(held: list[tuple[float, float]], fds: list[tuple[float, float]]) -> list[Measure]:
    """Before/after rows of the GRPO table, one (before, after) pair per seed."""
    out = []
    for seed, ((h0, h1), (f0, f1)) in enumerate(zip(held, fds, strict=True)):
        for method, h, f in (("pda_hybrid", h0, f0), ("+ GRPO 9 it", h1, f1)):
            out += [
                Measure("digits GRPO", method, 10, "p(held-out digit)", seed, h),
                Measure("digits GRPO", method, 10, "p(digit)", seed, 0.5),
                Measure("digits GRPO", method, 10, "FD", seed, f),
            ]
    return out


def test_grpo_verdict_pairs_seeds() -> None:
    """Gains of 0.25, 0.5 and 0.75 are raised (mean 0.5 > std 0.25), though the starting values
    spread over 0.25..0.75; FD moves by 1 against a starting spread of 2: within."""
    measures = grpo_measures(
        [(0.25, 0.5), (0.5, 1.0), (0.75, 1.5)], [(2.0, 3.0), (4.0, 5.0), (6.0, 7.0)]
    )
    change = paired_change(measures, "p(held-out digit)")
    assert (change.mean, change.std, change.n) == (0.5, 0.25, 3)
    assert grpo_verdict(measures) == (
        "GRPO, per-seed change (mean ± std over seeds): held-out reward 0.5 ± 0.25 (raised), "
        "training prompts' reward 0 ± 0; FD 1 ± 0 (seed spread of the starting FD 2: within)"
    )
    worse = grpo_measures([(0.5, 0.25), (0.5, 1.0), (0.5, 0.5)], [(2.0, 9.0)] * 3)
    assert grpo_verdict(worse).endswith(
        "held-out reward 0.0833 ± 0.38 (NOT raised), training prompts' reward 0 ± 0; "
        "FD 7 ± 0 (seed spread of the starting FD 0: OUTSIDE, higher)"
    )
    better = grpo_measures([(0.5, 0.75)] * 3, [(2.0, 1.0), (4.0, 3.0), (6.0, 5.0)])
    assert grpo_verdict(better).endswith("FD -1 ± 0 (seed spread of the starting FD 2: within)")
    much_better = grpo_measures([(0.5, 0.75)] * 3, [(2.0, 0.0), (2.5, 0.0), (3.0, 0.0)])
    assert grpo_verdict(much_better).endswith(
        "FD -2.5 ± 0.5 (seed spread of the starting FD 0.5: lower by more than it)"
    )
