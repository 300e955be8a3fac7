"""Objective contracts: loss values, limits and the (t, lambda) draw."""

from __future__ import annotations

import pytest
import torch

from proxt2i import OBJECTIVES
from proxt2i.objectives.eps_mse import EpsMseConfig
from proxt2i.objectives.prox_matching import (
    ProxMatchingConfig,
    draw_grid_times,
    proximal_matching_loss,
)
from proxt2i.objectives.step_weights import LOG10_FLOOR, Log10Weights, RootPWeights
from proxt2i.schedule import VPSchedule


def zero_net(y: torch.Tensor, t: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(y)


def test_proximal_matching_loss_golden() -> None:
    pred = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    target = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    # per-sample mse = [1, 0]; zeta = 2: 1 - exp(-1/4) and 0
    loss = proximal_matching_loss(pred, target, zeta=2.0)
    assert loss.tolist() == pytest.approx([1 - 0.7788007830714049, 0.0])


def test_large_zeta_gives_l2_gradients() -> None:
    """zeta^2 * grad(1 - exp(-mse/zeta^2)) -> grad(mse) as zeta grows."""
    pred = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
    zeta = 1e3
    (proximal_matching_loss(pred, target, zeta).sum() * zeta**2).backward()
    assert pred.grad is not None
    l2_grad = 2 * (pred.detach() - target) / 3
    assert pred.grad[0].tolist() == pytest.approx(l2_grad[0].tolist(), rel=1e-4)


def test_small_zeta_saturates() -> None:
    pred, target = torch.zeros(1, 4), torch.ones(1, 4)
    assert float(proximal_matching_loss(pred, target, zeta=0.01)) == pytest.approx(1.0)


def test_zeta_is_halved_at_each_milestone() -> None:
    obj = ProxMatchingConfig(l1_warmup_steps=5, zeta_init=1.0, zeta_milestones=(10, 20)).build()
    assert [obj.zeta(s) for s in (0, 9, 10, 19, 20, 99)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_zeta_schedule_of_the_latent_run() -> None:
    """ProxDM celeba_hq_vae: 300k L1 steps, then zeta 2.0 for 600k PM steps, then 1.0."""
    obj = ProxMatchingConfig(
        l1_warmup_steps=300_000, zeta_init=2.0, zeta_decay=0.5, zeta_milestones=(900_000,)
    ).build()
    steps = (299_999, 300_000, 899_999, 900_000, 1_499_999)
    assert [obj.zeta(s) for s in steps] == [2.0, 2.0, 2.0, 1.0, 1.0]
    assert [obj.phase(s) for s in steps] == [("l1", 0)] + [("pm", 300_000)] * 4


@pytest.mark.parametrize("milestones", [(1000,), (1500, 1200), (1200, 1200)])
def test_zeta_milestones_must_increase_inside_the_pm_phase(milestones: tuple[int, ...]) -> None:
    with pytest.raises(ValueError) as caught:
        ProxMatchingConfig(l1_warmup_steps=1000, zeta_milestones=milestones)
    assert (
        f"zeta_milestones {list(milestones)} must be increasing steps after l1_warmup_steps "
        "(1000): zeta only acts in the proximal-matching phase"
    ) in str(caught.value)


def test_step_weight_formulas() -> None:
    counts = torch.tensor([1, 8, 10, 27, 100, 1000])
    log10 = Log10Weights().weights(counts).tolist()
    assert log10 == [
        LOG10_FLOOR,
        pytest.approx(0.903089986991944),
        1.0,
        pytest.approx(1.4313637641589874),
        2.0,
        3.0,
    ]
    root3 = RootPWeights(p=3).weights(counts).tolist()
    assert root3 == pytest.approx([1.0, 2.0, 10 ** (1 / 3), 3.0, 100 ** (1 / 3), 10.0], abs=1e-12)
    assert RootPWeights(p=2).weights(torch.tensor([100, 10_000])).tolist() == [10.0, 100.0]


def test_root_p_weights_set_how_often_each_grid_is_drawn() -> None:
    """N in {1, 1000} with N^(1/3): weights 1 and 10, so N = 1000 in 10 of 11 draws."""
    t, _ = draw_grid_times((1, 1000), 11_000, torch.Generator().manual_seed(0), RootPWeights(p=3))
    share = float((t > 0).double().mean())  # N = 1 always gives t_0 = 0
    # t = 0 also for k = 1 of N = 1000, with chance 1/1000 of those draws
    assert share == pytest.approx(10 / 11 * 0.999, abs=0.01)  # binomial std ~0.003


def test_warmup_is_l1_on_eps_then_proximal_matching() -> None:
    torch.manual_seed(0)
    obj = ProxMatchingConfig(l1_warmup_steps=5, zeta_init=1.0).build()
    x0 = torch.zeros(4000, 1, 4, 4)
    l1 = float(obj.loss(zero_net, x0, step=0))  # E|xi| = sqrt(2 / pi)
    pm = float(
        obj.loss(zero_net, x0, step=5)
    )  # per-sample mse of 16 normals: E ~ 1 - E exp(-chi2/16)
    assert l1 == pytest.approx((2 / torch.pi) ** 0.5, rel=0.02)
    assert pm == pytest.approx(1 - (1 + 2 / 16) ** (-8), rel=0.03)  # chi2 MGF at -1/16


def test_eps_mse_of_the_zero_net_is_one() -> None:
    torch.manual_seed(0)
    loss = EpsMseConfig().build().loss(zero_net, torch.zeros(2000, 1, 4, 4), step=0)
    assert float(loss) == pytest.approx(1.0, rel=0.03)


def test_training_times_lie_on_the_sampling_grids() -> None:
    t, gamma = draw_grid_times((5, 10), 500, torch.Generator().manual_seed(0))
    on_grid = [any(abs(v * n - round(v * n)) < 1e-9 for n in (5, 10)) for v in t.tolist()]
    assert all(on_grid)
    assert float(t.max()) <= 0.9 + 1e-12  # t_{k-1} <= 1 - 1/N
    possible = torch.cat([VPSchedule().gammas(5), VPSchedule().gammas(10)])
    assert all(float((possible - g).abs().min()) < 1e-12 for g in gamma)


def test_backward_objective_rejects_grids_with_large_gamma() -> None:
    with pytest.raises(ValueError, match=r"drop step_counts \[5\]"):
        ProxMatchingConfig(discretization="backward", step_counts=(5, 10, 20))


def test_registry_families() -> None:
    fams = {k: cfg().build().family for k, cfg in OBJECTIVES.items()}  # type: ignore[attr-defined]
    assert fams == {"prox_matching": "prox", "eps_mse": "score"}
