"""Sampler contracts: golden single steps, network-call counts, determinism, exact limits."""

from __future__ import annotations

import pytest
import torch

from proxt2i import SAMPLERS
from proxt2i.fake_network import AffineEpsNet, GaussianOracleEps
from proxt2i.samplers.base import EpsFn
from proxt2i.samplers.pda_backward import backward_step
from proxt2i.samplers.pda_hybrid import hybrid_step
from proxt2i.samplers.score_ode import probability_flow_step
from proxt2i.samplers.score_sde import euler_maruyama_step
from proxt2i.schedule import VPSchedule

S = VPSchedule()
X = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
Z = torch.tensor([[0.5, -0.25]], dtype=torch.float64)
GAMMA = float(S.gammas(10)[5])  # step [0.5, 0.6]: 0.01 + 9.95 * 0.11 = 1.1045


def affine() -> EpsFn:
    net = AffineEpsNet(a=0.5, b=1.0, c=1.0).double()
    ctx = torch.zeros(1, 1, 4, dtype=torch.float64)
    return lambda y, t, lam: net(y, t, lam, ctx)


def test_gamma_of_the_golden_step() -> None:
    assert pytest.approx(1.1045) == GAMMA


def test_hybrid_step_golden() -> None:
    # y = 1.55225 x + sqrt(1.1045) z = [2.077726, -3.367238]; eps = y/2 + 0.5 + 1.1045
    out = hybrid_step(affine(), X, 0.5, GAMMA, Z)
    assert out.tolist()[0] == pytest.approx([-0.7003216375806218, -3.284087782763026], abs=1e-9)


def test_backward_step_golden() -> None:
    out = backward_step(affine(), X, 0.5, GAMMA, Z)
    assert out.tolist()[0] == pytest.approx([-3.928134718914062, -5.744623967508499], abs=1e-9)


def test_score_steps_golden() -> None:
    em = euler_maruyama_step(S, affine(), X, 0.6, GAMMA, Z)
    ode = probability_flow_step(S, affine(), X, 0.6, GAMMA)
    assert em.tolist()[0] == pytest.approx([-0.2727190927691069, -4.038793720922385], abs=1e-9)
    assert ode.tolist()[0] == pytest.approx([0.37702746625922123, -3.440277866783079], abs=1e-9)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_one_network_call_per_step_and_shape(name: str) -> None:
    sampler = SAMPLERS[name]().build()  # type: ignore[attr-defined]
    calls: list[tuple[float, float]] = []
    base = affine()

    def counting(y: torch.Tensor, t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        calls.append((float(t[0]), float(lam[0])))
        return 0.0 * base(y, t, lam)

    noise = torch.zeros(3, 2, dtype=torch.float64)
    out = sampler.sample(counting, noise, 20, torch.Generator().manual_seed(0))
    assert out.shape == (3, 2)
    assert len(calls) == 20
    if sampler.family == "prox":  # last call: the prox at t_0 = 0 with lambda of step 1
        assert calls[-1][0] == 0.0
    else:  # score samplers end with Tweedie at t_1
        assert calls[-1] == (pytest.approx(1 / 20), 1.0)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_deterministic_under_a_seed(name: str) -> None:
    sampler = SAMPLERS[name]().build()  # type: ignore[attr-defined]
    net = GaussianOracleEps(0.25, sampler.family)

    def run(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn(4, 3, generator=gen)
        return sampler.sample(lambda y, t, lam: net(y, t, lam, None), noise, 12, gen)

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_exact_networks_recover_the_data_variance(name: str) -> None:
    """With the exact eps-network for N(0, 0.25), 200 steps give variance 0.25 within 5%."""
    sampler = SAMPLERS[name]().build()  # type: ignore[attr-defined]
    net = GaussianOracleEps(0.25, sampler.family)
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(20000, 1, generator=gen)
    x = sampler.sample(lambda y, t, lam: net(y, t, lam, None), noise, 200, gen)
    assert float(x.var()) == pytest.approx(0.25, rel=0.05)


def test_pda_backward_refuses_coarse_grids_before_any_call() -> None:
    sampler = SAMPLERS["pda_backward"]().build()  # type: ignore[attr-defined]
    calls = []

    def eps(y: torch.Tensor, t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return y

    with pytest.raises(ValueError, match="PDA-backward needs gamma_k < 2"):
        sampler.sample(eps, torch.zeros(1, 2), 9, torch.Generator())
    assert calls == []
