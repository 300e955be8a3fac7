"""gamma / lambda / alpha values of the VP schedule (beta(t) = 0.1 + 19.9 t)."""

from __future__ import annotations

import math

import pytest
import torch

from proxt2i.schedule import VPSchedule, backward_lambda, hybrid_lambda

S = VPSchedule()


def test_gammas_for_five_steps_are_beta_integrals() -> None:
    # gamma_k = 0.1 / 5 + 19.9 / 2 * (t_k^2 - t_{k-1}^2), t_k = k / 5
    assert S.gammas(5).tolist() == pytest.approx([0.418, 1.214, 2.010, 2.806, 3.602])


def test_gammas_sum_to_the_full_integral_for_any_grid() -> None:
    for n in (1, 7, 1000):
        assert float(S.gammas(n).sum()) == pytest.approx(0.1 + 19.9 / 2)


def test_alpha_at_the_ends() -> None:
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    expected = [1.0, math.exp(-(0.05 + 19.9 / 8)), math.exp(-10.05)]
    assert S.alpha(t).tolist() == pytest.approx(expected)


def test_lambdas() -> None:
    g = torch.tensor([0.5, 1.0])
    assert hybrid_lambda(g).tolist() == [0.5, 1.0]
    assert backward_lambda(g).tolist() == pytest.approx([0.5 / 0.75, 2.0])


def test_backward_refuses_gamma_at_least_two() -> None:
    with pytest.raises(ValueError, match=r"gamma_k < 2 but the grid has gamma_k = 3\.602"):
        backward_lambda(S.gammas(5))


def test_backward_needs_ten_steps_on_the_uniform_grid() -> None:
    # N = 10: last gamma = 0.01 + 9.95 * 0.19 = 1.9005 < 2; N = 9: 2.1 > 2.
    assert float(S.gammas(9).max()) == pytest.approx(0.1 / 9 + 9.95 * 17 / 81)
    assert float(S.gammas(9).max()) > 2 > float(S.gammas(10).max())
    assert float(S.gammas(10)[-1]) == pytest.approx(1.9005)


def test_add_noise_is_the_formula_the_objectives_wrote_out() -> None:
    """Bit for bit what eps_mse and prox_matching computed inline before sharing add_noise:
    alpha in float64, cast to the batch dtype, then sqrt(alpha) x0 + sqrt(1 - alpha) n."""
    gen = torch.Generator().manual_seed(3)
    x0 = torch.randn(4, 3, 2, 2, generator=gen)
    noise = torch.randn(4, 3, 2, 2, generator=gen)
    t = torch.tensor([1e-3, 0.25, 0.5, 1.0], dtype=torch.float64)
    alpha = S.alpha(t).to(x0).view(4, 1, 1, 1)
    inline = alpha.sqrt() * x0 + (1 - alpha).sqrt() * noise
    noised = S.add_noise(x0, noise, t)
    assert noised.dtype == torch.float32
    assert torch.equal(noised, inline)
    ends = S.add_noise(torch.ones(2, 1), torch.full((2, 1), 2.0), t[[0, 3]].clone().zero_())
    assert ends.tolist() == [[1.0], [1.0]]  # t = 0: alpha = 1, no noise at all
    a1 = math.exp(-10.05)  # alpha at t = 1
    last = S.add_noise(torch.ones(1, 1), torch.full((1, 1), 2.0), t[3:])
    assert float(last) == pytest.approx(math.sqrt(a1) + 2 * math.sqrt(1 - a1), rel=1e-6)


def test_grid_rejects_zero_steps() -> None:
    with pytest.raises(ValueError, match="steps must be >= 1"):
        S.grid(0)
